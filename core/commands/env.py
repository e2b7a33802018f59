"""Versions, CPU, cores, and where the cache and run store live."""

from core.artifact_cache import default_cache
from core.environment import environment_record
from core.settings import Settings


def add_arguments(parser) -> None:
    pass


def run(args) -> dict:
    settings = Settings.from_env()
    record = environment_record()
    return {
        **record,
        "cache_dir": str(settings.cache_dir),
        "cache_bytes": default_cache().total_bytes(),
        "cache_cap_bytes": settings.cache_cap_bytes,
        "store_path": str(settings.store_path),
        "jobs_dir": str(settings.jobs_dir),
    }
