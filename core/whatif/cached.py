"""A small JSON result in the artifact cache: every measured table of the estimator is one.

Measurements are keyed like compiled libraries (CPU model, library versions and
what was measured), so a warm estimate reads files instead of timing kernels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from core.artifact_cache import ArtifactCache, ArtifactSpec, default_cache

RESULT_FILE = "result.json"
# Bump when how the estimator measures changes, so old tables are not reused.
MEASUREMENT_VERSION = 8


def _spec(kind: str, inputs: dict, libraries: tuple[str, ...]) -> ArtifactSpec:
    return ArtifactSpec(kind=kind, inputs={**inputs, "measurement_version": MEASUREMENT_VERSION},
                        libraries=libraries, cpu_specific=True)


def is_cached(kind: str, inputs: dict, *, libraries: tuple[str, ...] = (), cache: ArtifactCache | None = None) -> bool:
    """Whether this CPU already has the result for ``inputs`` (to measure all missing ones together)."""
    return (cache or default_cache()).lookup(_spec(kind, inputs, libraries)) is not None


def cached_json(kind: str, inputs: dict, compute: Callable[[], dict], *, libraries: tuple[str, ...] = (),
                cache: ArtifactCache | None = None, description: str = "") -> tuple[dict, bool]:
    """``(result, cache_hit)``: ``compute()`` runs only when this CPU has no result for ``inputs`` yet."""

    def build(directory: Path) -> None:
        (directory / RESULT_FILE).write_text(json.dumps(compute()))

    path, hit = (cache or default_cache()).get_or_build(_spec(kind, inputs, libraries), build,
                                                        description=description)
    return json.loads((path / RESULT_FILE).read_text()), hit
