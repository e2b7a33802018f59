"""Estimate a model's TVM latency and size at what-if sparsities and block shapes, in seconds.

Built from cached measurements: each Linear shape's BSR and dense kernel timed
at a sparsity grid, plus the measured rest of the model, scaled to the host's
speed now by a reference kernel; the dense peers (ONNX Runtime, OpenVINO,
PyTorch) are measured once per model and shape for comparison. --precision int8
estimates the int8 kernels (VNNI; AMX tiles for 16x4 where the CPU has them). --check SPARSITY:BLOCK
compiles that one point whole and records estimate vs measured in the run store.
"""

from core.errors import SparseLabError
from core.pruning.block import format_block
from core.tvm.bsr_rewrite import PRECISIONS
from core.whatif.jobs import whatif_check_job, whatif_job
from core.whatif.request import DEFAULT_BLOCKS_BY_PRECISION, WhatIfRequest


def add_arguments(parser) -> None:
    defaults = WhatIfRequest()
    parser.add_argument("--model", default=defaults.model,
                        help="bert-base, bert-large, bert-tiny, minilm, a folder, a hub id")
    parser.add_argument("--seq-len", type=int, default=defaults.seq_len)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--sparsities", default=",".join(f"{s:g}" for s in defaults.sparsities),
                        help="comma-separated, each in [0, 1)")
    parser.add_argument("--blocks", default=None,
                        help="comma-separated ROWSxCOLS (default fp32: "
                             f"{','.join(format_block(b) for b in DEFAULT_BLOCKS_BY_PRECISION['fp32'])}; int8: "
                             f"{','.join(format_block(b) for b in DEFAULT_BLOCKS_BY_PRECISION['int8'])})")
    parser.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                        help="int8: int8 weights x activations quantised per token at run time (VNNI / AMX kernels)")
    parser.add_argument("--peers", default="all",
                        help="dense engines to compare with, comma-separated, 'all' or 'none' "
                             "(measured once per model, shape and threads, then cached)")
    parser.add_argument("--check", metavar="SPARSITY:BLOCK",
                        help="instead: compile this one point (e.g. 0.9:16x1) and compare with its estimate")
    parser.add_argument("--repeats", type=int, default=20, help="whole-model timing runs for --check")


def run(args) -> dict:
    params = {key: getattr(args, key) for key in ("model", "seq_len", "batch", "threads", "sparsities", "blocks",
                                                  "precision", "peers")}
    if not args.check:
        return whatif_job(params)
    sparsity, _, block = args.check.partition(":")
    try:
        sparsity = float(sparsity)
    except ValueError:
        raise SparseLabError(f"--check takes SPARSITY:BLOCK (e.g. 0.9:16x1), not '{args.check}'.") from None
    return whatif_check_job({**params, "sparsity": sparsity, "block": block or None, "repeats": args.repeats})
