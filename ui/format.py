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
