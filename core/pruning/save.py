"""Write a pruned model as a folder every SparseLab command accepts as a model source.

The folder holds the model (safetensors, dense with zeros) with its config, the
tokenizer, and ``pruning.json`` (how it was pruned and each layer's sparsity).
It appears in one rename of a finished temp folder, so a crash or a refusal
never leaves a half-written model where a later run would load it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from core.errors import SparseLabError

SUMMARY_FILE = "pruning.json"


def check_target(folder: str | os.PathLike) -> Path:
    """The folder to save into, refused if it exists with anything in it (nothing is written here)."""
    path = Path(folder).expanduser().resolve()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise SparseLabError(f"'{folder}' already exists and is not an empty folder; choose a new folder to save to.")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SparseLabError(f"Cannot save to '{folder}': '{parent}' is a file, not a folder.")
            break
    return path


def save_pruned(model, tokenizer, folder: str | os.PathLike, summary: dict) -> Path:
    """Save model, tokenizer and ``summary`` to ``folder`` atomically; returns the folder."""
    path = check_target(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(staging, safe_serialization=True)
        if tokenizer is not None:  # a model without tokenizer files is still a model
            tokenizer.save_pretrained(staging)
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path
