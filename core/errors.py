"""The one exception type whose message is meant for the user, in the UI and the CLI."""


class SparseLabError(Exception):
    """Bad input or an impossible request, with a message that says what to change."""
