"""Compile a transformers model with TVM (dense and BSR) and time it against PyTorch on the same cores.

The sparse model is a pruned folder (--weights), random block-sparse what-if
weights (--whatif SPARSITY --block RxC) or a pruning of the model
(--prune METHOD:SPARSITY, e.g. magnitude:0.95). Compiled libraries are cached.
"""

from core.tvm.bsr_rewrite import PRECISIONS
from core.tvm.jobs import tvm_job
from core.tvm.request import DEFAULT_MODEL, PRUNE_BLOCK, WHATIF_BLOCK, TvmRequest


def add_arguments(parser) -> None:
    defaults = TvmRequest()
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="dense model (bert-base, bert-tiny, minilm, a folder); ignored with --weights")
    sparse = parser.add_mutually_exclusive_group(required=True)
    sparse.add_argument("--weights", help="folder of an already pruned model (also the dense baseline)")
    sparse.add_argument("--whatif", type=float, help="random block-sparse weights at this sparsity")
    sparse.add_argument("--prune", help="METHOD:SPARSITY, e.g. magnitude:0.95 or block:0.9")
    parser.add_argument("--block", help=f"BSR block ROWSxCOLS (default {PRUNE_BLOCK}; {WHATIF_BLOCK} with --whatif)")
    parser.add_argument("--threshold", type=float, default=defaults.threshold,
                        help="minimum block sparsity to convert")
    parser.add_argument("--seq-len", type=int, default=defaults.seq_len)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--tune", action="store_true", help="measure BSR schedules per layer shape (cached)")
    parser.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                        help="fp32, or int8: u8 activations quantised per token at run time x per-row int8 weights "
                             "(VNNI; AMX tiles for 16x4 and dense where the CPU has them, and attention's matmuls "
                             "in bf16 on AMX; SPARSELAB_ATTENTION_BF16=0 keeps them fp32); "
                             "int8 BSR takes blocks of 4 input columns (16x4, 4x4, 1x4)")
    parser.add_argument("--peers", default=defaults.peers,
                        help="dense engines timed beside TVM: all, none (PyTorch eager only), or a comma-separated "
                             "list of onnxruntime-fp32, onnxruntime-int8, openvino-default, openvino-fp32, "
                             "openvino-int8")
    parser.add_argument("--sweep", action="store_true", help="also sweep one 768x768 layer over blocks x sparsities")


def run(args) -> dict:
    return tvm_job({name: getattr(args, name) for name in TvmRequest().as_params()})
