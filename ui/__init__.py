"""Streamlit widgets shared by the pages (the pages themselves stay UI-only descriptions)."""
