"""Estimate a model's TVM latency and size at what-if sparsities and block shapes, in seconds.

Built from cached measurements: each Linear shape's BSR and dense kernel timed
at a sparsity grid, plus the measured rest of the model. --check SPARSITY:BLOCK
compiles that one point whole and records estimate vs measured in the run store.
"""

from core.errors import SparseLabError
from core.pruning.block import format_block
from core.whatif.jobs import whatif_check_job, whatif_job
from core.whatif.request import WhatIfRequest


def add_arguments(parser) -> None:
    defaults = WhatIfRequest()
    parser.add_argument("--model", default=defaults.model,
                        help="bert-base, bert-large, bert-tiny, minilm, a folder, a hub id")
    parser.add_argument("--seq-len", type=int, default=defaults.seq_len)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--sparsities", default=",".join(f"{s:g}" for s in defaults.sparsities),
                        help="comma-separated, each in [0, 1)")
    parser.add_argument("--blocks", default=",".join(format_block(b) for b in defaults.blocks),
                        help="comma-separated ROWSxCOLS")
    parser.add_argument("--check", metavar="SPARSITY:BLOCK",
                        help="instead: compile this one point (e.g. 0.9:16x1) and compare with its estimate")
    parser.add_argument("--repeats", type=int, default=20, help="whole-model timing runs for --check")


def run(args) -> dict:
    params = {key: getattr(args, key) for key in ("model", "seq_len", "batch", "threads", "sparsities", "blocks")}
    if not args.check:
        return whatif_job(params)
    sparsity, _, block = args.check.partition(":")
    try:
        sparsity = float(sparsity)
    except ValueError:
        raise SparseLabError(f"--check takes SPARSITY:BLOCK (e.g. 0.9:16x1), not '{args.check}'.") from None
    return whatif_check_job({**params, "sparsity": sparsity, "block": block or None, "repeats": args.repeats})
