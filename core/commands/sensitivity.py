"""Per-layer sensitivity: each Linear layer's fidelity drop when only it is pruned.

For every selected layer and every sparsity, that layer alone is pruned (magnitude by default) and the
model is scored against the dense one on the project's paraphrase pairs; ``fidelity_drop`` is 1 - mean
cosine. The fragile layers are the ones to keep denser (``core.pruning.sensitivity.recipe``).
"""

from core.errors import SparseLabError
from core.model_source import TASKS
from core.pruning.apply import METHODS
from core.pruning.sensitivity import SPARSITIES, layer_sensitivity


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise SparseLabError(f"Sparsities '{text}' are not comma-separated numbers (e.g. 0.5,0.9).") from exc
    if not values:
        raise SparseLabError("Give at least one sparsity (e.g. --sparsities 0.5,0.9).")
    return values


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="minilm", help="minilm, bert-base, bert-tiny, a folder or a hub id")
    parser.add_argument("--task", choices=TASKS, default="base", help="which head to load with the model")
    parser.add_argument("--sparsities", default=",".join(str(s) for s in SPARSITIES),
                        help="comma-separated sparsities to prune each layer at")
    parser.add_argument("--method", choices=METHODS, default="magnitude")
    parser.add_argument("--block", help="block ROWSxCOLS for --method block")
    parser.add_argument("--layers", nargs="+", metavar="PATTERN", help="layers to measure (default: encoder)")
    parser.add_argument("--exclude", nargs="+", metavar="PATTERN", default=(), help="layers to skip")


def run(args) -> dict:
    sparsities = _floats(args.sparsities)
    params = {"method": args.method, "block": args.block, "patterns": args.layers, "exclude": list(args.exclude)}
    layers = layer_sensitivity(args.model, sparsities, params, args.task)
    return {"model": args.model, "method": args.method, "sparsities": sparsities, "layers": layers}
