"""Prune a model's Linear layers (magnitude, block, m:n, random what-if) and score its fidelity.

Prints each Linear layer's element and block sparsity, the overall sparsity of
the pruned layers, and (for models with a tokenizer) the fidelity to the dense
model on the project's paraphrase set. ``--save DIR`` writes the pruned model
as a folder that every command accepts as ``--model DIR``. ``--sweep`` instead
measures the fidelity curve of several methods over several sparsities.

The data-aware methods (sparsegpt, wanda) run calibration sentences from core/data/corpus.txt through the
model: ``--calibration N`` sentences, ``--damping`` (SparseGPT's Hessian damping); their zeros are
unstructured, or m:n with ``--mn 2:4``, or blocks with ``--block 16x4`` (``--structure`` says it outright).
"""

from core.errors import SparseLabError
from core.model_source import TASKS
from core.pruning.allocation import ALLOCATIONS
from core.pruning.apply import (
    DEFAULT_BLOCK,
    DEFAULT_CALIBRATION,
    DEFAULT_DAMPING,
    DEFAULT_MN,
    METHODS,
    STRUCTURES,
    PruneConfig,
)
from core.pruning.block import NORMS
from core.pruning.calibration import SHIPPED_TEXTS
from core.pruning.magnitude import SCOPES
from core.pruning.methods import get_method
from core.pruning.session import prune_and_measure
from core.pruning.sweep import METHOD_SPECS, SPARSITIES, run_sweep


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="minilm", help="minilm, bert-base, bert-tiny, a folder or a hub id")
    parser.add_argument("--task", choices=TASKS, default="base", help="which head to load with the model")
    parser.add_argument("--method", choices=METHODS, default="magnitude")
    parser.add_argument("--sparsity", type=float, help="fraction of weights to remove, in [0, 1)")
    parser.add_argument("--block", help=f"block ROWSxCOLS (out x in) for block/random (default {DEFAULT_BLOCK}), "
                                        "and for the block-sparsity stats; with sparsegpt/wanda: prune in blocks")
    parser.add_argument("--mn", help=f"M:N for --method mn (default {DEFAULT_MN}): keep M of every N input "
                                     "weights; with sparsegpt/wanda: prune m:n")
    parser.add_argument("--structure", choices=STRUCTURES,
                        help="sparsegpt/wanda: the zeros' shape (default: mn with --mn, block with --block, "
                             "else unstructured)")
    parser.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION,
                        help="sparsegpt/wanda: calibration sentences from core/data/corpus.txt")
    parser.add_argument("--damping", type=float, default=DEFAULT_DAMPING,
                        help="sparsegpt: Hessian damping, a fraction of its mean diagonal")
    parser.add_argument("--allocation", choices=ALLOCATIONS, default="uniform",
                        help="sparsegpt/wanda: every layer at --sparsity (uniform), or per-layer sparsities from "
                             "each layer's measured drop on the calibration text, --sparsity overall (sensitivity; "
                             "measures every layer first: minutes on MiniLM)")
    parser.add_argument("--scope", choices=SCOPES, default="layer", help="one threshold per layer or global")
    parser.add_argument("--norm", choices=NORMS, default="l2", help="block score")
    parser.add_argument("--layers", nargs="+", metavar="PATTERN",
                        help="layers to prune: glob, plain substring, or re:REGEX "
                             "(default: the Linears of the repeated blocks)")
    parser.add_argument("--exclude", nargs="+", metavar="PATTERN", default=(), help="layers to keep dense")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random what-if weights")
    parser.add_argument("--save", metavar="DIR", help="write the pruned model to this new folder")
    parser.add_argument("--no-fidelity", action="store_true", help="skip scoring against the dense model")
    parser.add_argument("--sweep", action="store_true", help="measure fidelity vs sparsity instead")
    parser.add_argument("--methods", nargs="+", default=list(METHOD_SPECS), metavar="SPEC",
                        help="with --sweep: magnitude, magnitude:global, block:16x1, mn:2:4, random:16x1")
    parser.add_argument("--sparsities", nargs="+", type=float, default=list(SPARSITIES),
                        help="with --sweep: the sparsities of each curve")
    parser.add_argument("--recover", action="store_true",
                        help="recover by distillation from the dense model (core/recovery) for --minutes")
    parser.add_argument("--minutes", type=float, default=15.0, help="with --recover: the training time budget")
    parser.add_argument("--lr", type=float, help="with --recover: peak learning rate (default 1e-3)")
    parser.add_argument("--text", choices=tuple(SHIPPED_TEXTS),
                        help="with --recover: the shipped training text (default both: the project corpus and "
                             "WordNet's sentences, core/data/CORPUS.md)")


def run(args) -> dict:
    params = {"method": args.method, "sparsity": args.sparsity, "block": args.block, "mn": args.mn,
              "scope": args.scope, "norm": args.norm, "patterns": args.layers, "exclude": args.exclude,
              "seed": args.seed, "allocation": args.allocation}  # refused by methods that cannot take it
    if get_method(args.method).needs_calibration:
        params.update(structure=_structure(args), calibration=args.calibration, damping=args.damping)
    if args.sweep:
        if args.save or args.no_fidelity:
            raise SparseLabError("--sweep measures fidelity and saves nothing: drop --save and --no-fidelity.")
        shared = {k: params[k] for k in ("norm", "patterns", "exclude", "seed")}
        return run_sweep(args.model, args.methods, args.sparsities, args.task, shared)
    if args.recover:
        from core.recovery.jobs import recover_job

        return recover_job({"model": args.model, "method": args.method, "sparsity": args.sparsity, "block": args.block,
                            "mn": args.mn, "scope": args.scope, "seed": args.seed, "minutes": args.minutes,
                            "lr": args.lr, "corpus_name": args.text, "allocation": args.allocation,
                            "save": args.save})
    config = PruneConfig.from_params(params)
    return prune_and_measure(args.model, config, args.task, score=not args.no_fidelity, save=args.save)


def _structure(args) -> str:
    """The zeros' shape a data-aware method was asked for: said outright, or implied by --mn / --block."""
    if args.structure:
        return args.structure
    if args.mn and args.block:
        raise SparseLabError("Give either --mn (m:n zeros) or --block (block zeros), not both, or say which "
                             "with --structure.")
    return "mn" if args.mn else "block" if args.block else "unstructured"
