"""Human-readable numbers for the pages."""


def human_bytes(size: float | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1000
    return f"{size:.2f} GB"


def timestamp(epoch_seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch_seconds))


# What each fidelity score is called on the pages, and how it is printed. Encoders are scored on embeddings
# (core.fidelity.Fidelity), decoders on next tokens (DecoderFidelity): a page shows whichever the run has.
FIDELITY_SCORES = {
    "mean_cosine": ("Mean cosine vs dense", "{:.3f}"),
    "min_cosine": ("Min cosine vs dense", "{:.3f}"),
    "retrieval_accuracy": ("Paraphrase retrieval", "{:.1%}"),
    "top1_agreement": ("Top-1 agreement (head)", "{:.1%}"),
    "next_token_agreement": ("Next-token agreement vs dense", "{:.1%}"),
    "perplexity_ratio": ("Perplexity, pruned / dense", "{:.3f}x"),
}


def fidelity_scores(fidelity: dict | None) -> list[tuple[str, str, str]]:
    """``(key, label, formatted value)`` of each score ``fidelity`` holds, in FIDELITY_SCORES' order."""
    fidelity = fidelity or {}
    return [(key, label, form.format(fidelity[key])) for key, (label, form) in FIDELITY_SCORES.items()
            if isinstance(fidelity.get(key), (int, float))]
