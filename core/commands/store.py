"""Quantize a model's Linear layers to int8 and save it (PruneBERT layout or SparseLab's), verified bit-exact."""

from pathlib import Path

from core.model_source import TASKS, resolve
from core.run_store import RunRecord, default_store
from core.storage.quantization import EMBEDDING_CHOICES
from core.storage.request import StoreRequest
from core.storage.store import FORMATS, store_model


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model source: a pruned folder, minilm, bert-base, ...")
    parser.add_argument("--format", choices=tuple(FORMATS), default="sparselab")
    parser.add_argument("--per-channel", action="store_true", help="per-channel int8 scales (default per-tensor)")
    parser.add_argument("--embeddings", choices=EMBEDDING_CHOICES, default="none",
                        help="leave embeddings out (they come from the model source on load), or store them")
    parser.add_argument("--task", choices=TASKS, default="base", help="which head the model has")
    parser.add_argument("--out", required=True, help="the .h5 file to write (replaced only when complete)")


def run(args) -> dict:
    request = StoreRequest.from_params({"model": args.model, "format": args.format, "per_channel": args.per_channel,
                                        "embeddings": args.embeddings, "task": args.task})
    source, config = resolve(request.model), request.config
    result = store_model(source, config, Path(args.out))
    default_store().add(RunRecord(
        kind="store", model=source.name, method=config.method,
        sparsity=result.linear_sparsity, size_bytes=result.size_bytes,
        settings={"format": config.format, "embeddings": config.embeddings, "task": config.task},
        metrics=result.as_dict()))
    return result.as_dict()
