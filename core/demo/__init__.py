"""The guided demo: the whole pipeline on one model, summarised on one card."""
