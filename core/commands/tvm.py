"""Compile a transformers model with TVM (dense and BSR) and time it against PyTorch on the same cores.

The sparse model is a pruned folder (--weights), random block-sparse what-if
weights (--whatif SPARSITY --block RxC) or a pruning of the model
(--prune METHOD:SPARSITY, e.g. magnitude:0.95). Compiled libraries are cached.
"""

from core.tvm.benchmark import run_request


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="bert-base",
                        help="dense model (bert-base, bert-tiny, minilm, a folder); ignored with --weights")
    sparse = parser.add_mutually_exclusive_group(required=True)
    sparse.add_argument("--weights", help="folder of an already pruned model (also the dense baseline)")
    sparse.add_argument("--whatif", type=float, help="random block-sparse weights at this sparsity")
    sparse.add_argument("--prune", help="METHOD:SPARSITY, e.g. magnitude:0.95 or block:0.9")
    parser.add_argument("--block", help="BSR block ROWSxCOLS (default 1x1; 16x1 with --whatif)")
    parser.add_argument("--threshold", type=float, default=None, help="minimum block sparsity to convert (0.8)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tune", action="store_true", help="measure BSR schedules per layer shape (cached)")
    parser.add_argument("--sweep", action="store_true", help="also sweep one 768x768 layer over blocks x sparsities")


def run(args) -> dict:
    return run_request({key: getattr(args, key) for key in (
        "model", "weights", "whatif", "prune", "block", "threshold", "seq_len", "batch", "threads", "repeats",
        "warmup", "tune", "sweep")})
