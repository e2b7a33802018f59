"""The registry of peer engines: one module per engine in this package, found by ``pkgutil``.

An engine is a subclass of ``Engine`` with a unique ``name`` (``onnxruntime-int8``),
the library family it belongs to (``engine``), the precision it is meant to run
(``precision``), the modules it needs (``requires``) and the distributions whose
versions key its artifacts (``libraries``). ``prepare`` builds what the engine
loads (ONNX files, quantized models) through the artifact cache; ``load`` returns
a ``Runner`` whose ``run(inputs)`` gives the model's first output as numpy and
whose ``precision`` is what the engine really ran (OpenVINO picks bf16 on CPUs
that have it). Adding an engine is one new module here; nothing else changes.

Engine modules import their library inside ``prepare``/``load`` only, so
discovery is cheap and a missing library makes only that engine unavailable.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    import numpy as np

    from core.artifact_cache import ArtifactCache
    from core.peers.model_ref import ModelRef
    from core.tvm.relax_import import InputShape

INPUT_NAMES = ("input_ids", "attention_mask")


class Runner(Protocol):
    precision: str

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The model's first output (last hidden state, or a head's logits) for int64 ``inputs``."""


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` built: artifact files by role, and whether the cache already had them all."""

    artifacts: dict[str, str] = field(default_factory=dict)
    cache_hit: bool | None = None  # None: nothing to build


class Engine:
    name: ClassVar[str] = ""
    engine: ClassVar[str] = ""
    precision: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    libraries: ClassVar[tuple[str, ...]] = ()
    order: ClassVar[int] = 100  # position in reports and default runs

    @classmethod
    def missing(cls) -> str | None:
        """Why this engine cannot run here (a library that is not installed), or None."""
        absent = [module for module in cls.requires if importlib.util.find_spec(module) is None]
        if absent:
            return (f"{', '.join(absent)} is not installed (pip install -r requirements.txt adds "
                    f"{', '.join(cls.libraries) or ', '.join(absent)}).")
        return None

    def prepare(self, model: ModelRef, shape: InputShape, cache: ArtifactCache) -> Prepared:
        """Build (or fetch from ``cache``) what ``load`` needs; engines without artifacts build nothing."""
        return Prepared()

    def load(self, prepared: Prepared, shape: InputShape, threads: int) -> Runner:
        """A runner using exactly ``threads`` threads. Every engine module overrides this."""
        raise NotImplementedError(f"peer engine {self.name or type(self).__name__} does not define load()")


def class_path(cls: type[Engine]) -> str:
    """``module:Class``, how a worker process imports the engine it runs."""
    return f"{cls.__module__}:{cls.__qualname__}"


def import_class(path: str) -> type[Engine]:
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _discover() -> dict[str, type[Engine]]:
    found: dict[str, type[Engine]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, Engine) and value.name
                    and value.__module__ == module.__name__):
                if value.name in found:
                    raise RuntimeError(f"Two peer engines are named '{value.name}'.")
                found[value.name] = value
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


ENGINES: dict[str, type[Engine]] = _discover()


def engine_names() -> list[str]:
    return list(ENGINES)


def get(name: str) -> type[Engine]:
    from core.errors import SparseLabError

    if name not in ENGINES:
        raise SparseLabError(f"Unknown peer engine '{name}'; choose from {', '.join(ENGINES)}.")
    return ENGINES[name]
