"""How a peer worker process finds the model the parent was asked about.

A ``ModelRef`` is JSON: the argument to ``core.model_source.resolve`` (a model
name or a folder), the task head, and a fingerprint that keys every artifact
built from it (``ModelSource.fingerprint()`` for named models, a hash of the
state dict and config for a model handed over in memory, which is first saved
to a private folder so workers can load it). Workers load the model lazily and
once: an engine whose artifacts are already cached never loads it at all.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from core.model_source import resolve

TASK_BY_CLASS_SUFFIX = {"ForSequenceClassification": "sequence-classification",
                        "ForQuestionAnswering": "question-answering",
                        "ForCausalLM": "causal-lm", "LMHeadModel": "causal-lm"}  # decoders keep their LM head


@dataclass(frozen=True)
class ModelRef:
    label: str  # what reports and the run store call the model
    location: str  # resolve() argument: a model name or a folder
    fingerprint: dict
    vocab_size: int
    task: str = "base"
    has_tokenizer: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelRef:
        return cls(**data)

    def load_model(self):
        return _load_model(self.location, self.task)

    def load_tokenizer(self):
        return resolve(self.location).load_tokenizer()


@functools.lru_cache(maxsize=2)
def _load_model(location: str, task: str):
    return resolve(location).load_model(task)


def state_digest(model) -> str:
    """SHA-256 of every tensor of the state dict (name, dtype, shape, bytes) and the config."""
    import torch

    sha = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().contiguous().cpu()
        sha.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        sha.update(tensor.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    config = getattr(model, "config", None)
    if config is not None:
        sha.update(config.to_json_string(use_diff=False).encode())
    return sha.hexdigest()[:32]


def task_of(model) -> str:
    name = type(model).__name__
    return next((task for suffix, task in TASK_BY_CLASS_SUFFIX.items() if name.endswith(suffix)), "base")


def model_ref(model, workdir: Path) -> ModelRef:
    """A reference to a model name (or folder) or to an in-memory transformers model (saved in ``workdir``)."""
    if isinstance(model, str):
        source = resolve(model)
        return ModelRef(label=model, location=model, fingerprint=source.fingerprint(),
                        vocab_size=source.load_config().vocab_size, has_tokenizer=_has_tokenizer(source))
    folder = Path(workdir) / "model"
    config = getattr(model, "config", None)
    before = copy.deepcopy(config.__dict__) if config is not None else None
    model.save_pretrained(folder)
    if config is not None:  # save_pretrained writes `architectures` into the caller's config: put it back, or the
        config.__dict__.clear()  # model's fingerprint (a TVM cache key) changes once its peers were measured
        config.__dict__.update(before)
    label = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
    return ModelRef(label=label, location=str(folder), task=task_of(model), vocab_size=model.config.vocab_size,
                    fingerprint={"state": state_digest(model), "class": type(model).__name__})


def _has_tokenizer(source) -> bool:
    """Real text means something to trained weights only: config architectures (seeded random
    weights) count as having no tokenizer, everything else if its tokenizer loads."""
    if source.kind == "config":
        return False
    try:
        source.load_tokenizer()
    except Exception:  # a folder without tokenizer files, an unreachable hub id
        return False
    return True
