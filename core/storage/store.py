"""Quantize a model, save it in either format, reload it and prove it is the same model."""

from __future__ import annotations

import io
import json
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import h5py
import torch

from core.errors import SparseLabError
from core.model_source import TASKS, ModelSource
from core.storage import prunebert_format, sparselab_format
from core.storage.h5_files import SETTINGS_ATTR, open_h5
from core.storage.quantization import EMBEDDING_CHOICES, is_embedding_key, prepare_for_storage
from core.storage.quantized_state import QuantizedState, decompose, load_into
from core.storage.validation import ExpectedLayout, json_attr
from core.storage.verify import outputs_equal, random_inputs

FORMATS = {prunebert_format.NAME: prunebert_format, sparselab_format.NAME: sparselab_format}


@dataclass(frozen=True)
class StoreConfig:
    format: str = sparselab_format.NAME
    per_channel: bool = False
    embeddings: str = "none"  # none | fp32 | fp16
    task: str = "base"

    @property
    def method(self) -> str:
        """The run store's method name for this quantization."""
        return f"int8-{'channel' if self.per_channel else 'tensor'}"

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise SparseLabError(f"Unknown format '{self.format}'; choose {' or '.join(FORMATS)}.")
        if self.embeddings not in EMBEDDING_CHOICES:
            raise SparseLabError(f"embeddings must be one of {', '.join(EMBEDDING_CHOICES)}.")


@dataclass(frozen=True)
class StoreResult:
    format: str
    path: str
    size_bytes: int
    dense_size_bytes: int  # torch.save of the fp32 model's stored part (pruned weights still dense)
    bit_exact: bool
    save_s: float
    load_s: float
    linear_sparsity: float  # fraction of zero int8 weights over the stored Linear layers

    def as_dict(self) -> dict:
        return asdict(self)


def is_stored(name: str, config: StoreConfig) -> bool:
    """Whether a state-dict key goes into the file: everything but embeddings when they are left out."""
    return config.embeddings != "none" or not is_embedding_key(name)


def stored_state(quantized: torch.nn.Module, config: StoreConfig) -> QuantizedState:
    return decompose(quantized.state_dict(), keep=lambda name: is_stored(name, config),
                     fp16=lambda name: config.embeddings == "fp16" and is_embedding_key(name))


def torch_save_size(state_dict: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.tell()


def stored_torch_size(model: torch.nn.Module, config: StoreConfig) -> int:
    """torch.save bytes of the part of ``model`` (fp32 or quantized) that a file would hold."""
    return torch_save_size({k: v for k, v in model.state_dict().items() if is_stored(k, config)})


def save_state(state: QuantizedState, config: StoreConfig, path: Path, source_name: str) -> None:
    settings = json.dumps({**asdict(config), "source": source_name})
    FORMATS[config.format].save(state, path, attrs={SETTINGS_ATTR: settings})


def file_settings(path: Path) -> tuple[str, StoreConfig]:
    """Which format a file is in and the settings it was saved with (defaults for notebook files)."""
    with open_h5(path) as h5:
        if sparselab_format.is_sparselab_file(h5):
            fmt = sparselab_format.NAME
        elif prunebert_format.is_prunebert_file(h5):
            fmt = prunebert_format.NAME
        else:
            raise SparseLabError(f"'{Path(path).name}' is an HDF5 file but not a SparseLab or PruneBERT model file.")
        saved = json_attr(h5, SETTINGS_ATTR)
        tensors = h5.get("tensors") if fmt == sparselab_format.NAME else h5
        has_embeddings = isinstance(tensors, h5py.Group) and any(is_embedding_key(k) for k in tensors.keys())
    saved.pop("source", None)
    defaults = {"format": fmt, "embeddings": "fp32" if has_embeddings else "none"}
    return fmt, _checked_settings(Path(path).name, {**defaults, **saved, "format": fmt})


def _checked_settings(filename: str, settings: dict) -> StoreConfig:
    """The file's saved settings as a StoreConfig, refusing unknown keys and values of the wrong type."""
    types = {f.name: f.type for f in fields(StoreConfig)}
    unknown = sorted(set(settings) - set(types))
    if unknown:
        raise SparseLabError(f"'{filename}' has settings this SparseLab does not know ({', '.join(unknown)}): "
                             f"it is damaged or written by a newer SparseLab.")
    for key, value in settings.items():
        wanted = bool if key == "per_channel" else str
        if type(value) is not wanted:
            raise SparseLabError(f"'{filename}' has setting {key}={value!r}; a {wanted.__name__} is expected: "
                                 f"the file is damaged.")
    config = StoreConfig(**settings)
    config.validate()
    if config.task not in TASKS:
        raise SparseLabError(f"'{filename}' was saved for task '{config.task}', which is not one of "
                             f"{', '.join(TASKS)}: the file is damaged.")
    return config


def expected_layout(quantized: torch.nn.Module, config: StoreConfig) -> ExpectedLayout:
    """What a file saved with ``config`` may and must hold for ``quantized`` (embeddings only when stored)."""
    return ExpectedLayout.of(quantized.state_dict(), required=lambda name: is_stored(name, config))


def read_into(path: Path, fmt: str, config: StoreConfig, fresh: torch.nn.Module) -> torch.nn.Module:
    """``fresh`` (the source quantized as ``config`` says) with the weights in ``path``, every part of the
    file checked against ``fresh`` before it is read."""
    state = FORMATS[fmt].load(path, expected_layout(fresh, config))
    try:
        return load_into(fresh, state)
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:  # the checks above should leave none
        raise SparseLabError(f"'{Path(path).name}' passed the file checks, but the model refuses its weights "
                             f"({exc}); the file is damaged or from an incompatible SparseLab.") from exc


def load_file(path: Path, source: ModelSource) -> tuple[torch.nn.Module, StoreConfig, float]:
    """The quantized model in ``path``; parts the file leaves out come from ``source``. Returns load seconds."""
    fmt, config = file_settings(path)
    fresh = prepare_for_storage(source.load_model(config.task), config.per_channel, "fp32")
    start = time.perf_counter()
    model = read_into(path, fmt, config, fresh)
    return model, config, time.perf_counter() - start


def verify_file(path: Path, source: ModelSource, inputs_count: int = 20) -> dict:
    """Reload ``path`` and compare it with ``source`` quantized the way the file says it was."""
    model, config, load_s = load_file(path, source)
    reference = prepare_for_storage(source.load_model(config.task), config.per_channel, config.embeddings)
    inputs = random_inputs(reference.config.vocab_size, reference.config.max_position_embeddings, inputs_count)
    return {"format": config.format, "settings": asdict(config), "bit_exact": outputs_equal(reference, model, inputs),
            "load_s": load_s, "inputs_checked": inputs_count, "size_bytes": Path(path).stat().st_size}


def store_model(source: ModelSource, config: StoreConfig, out: Path, inputs_count: int = 20) -> StoreResult:
    config.validate()
    model = source.load_model(config.task)
    quantized = prepare_for_storage(model, config.per_channel, config.embeddings)
    state = stored_state(quantized, config)
    start = time.perf_counter()
    save_state(state, config, out, source.name)
    save_s = time.perf_counter() - start
    reloaded, _, load_s = load_file(out, source)
    inputs = random_inputs(model.config.vocab_size, model.config.max_position_embeddings, inputs_count)
    weights = [layer.weight.int_repr for layer in state.linears.values()]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return StoreResult(format=config.format, path=str(out), size_bytes=Path(out).stat().st_size,
                       dense_size_bytes=stored_torch_size(model, config),
                       bit_exact=outputs_equal(quantized, reloaded, inputs), save_s=save_s, load_s=load_s,
                       linear_sparsity=zeros / max(1, sum(w.size for w in weights)))


def format_sizes(state: QuantizedState, config: StoreConfig, source_name: str) -> dict[str, int]:
    """Bytes of the same stored state in every format (written to a temp dir)."""
    sizes = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in FORMATS:
            path = Path(folder) / f"{name}.h5"
            save_state(state, StoreConfig(**{**asdict(config), "format": name}), path, source_name)
            sizes[name] = path.stat().st_size
    return sizes
