"""Inspect a .tflite file: weight tensors, shapes and sparsity (compressed DENSIFY weights included), m:n check."""

from pathlib import Path

from core.errors import SparseLabError
from core.pruning.m_by_n import parse_mn


def add_arguments(parser) -> None:
    parser.add_argument("file", help="a .tflite file")
    parser.add_argument("--mn", help="check this m:n pattern (m nonzeros in every n) along the last dimension, "
                                     "e.g. 2:4")


def run(args) -> dict:
    mn = parse_mn(args.mn) if args.mn else None
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise SparseLabError(f"Cannot read '{args.file}': {exc.strerror}.") from exc
    from core.tflite.inspection import inspect_tflite  # the interpreter loads only when inspecting

    return {"file": args.file, **inspect_tflite(data, mn).as_dict()}
