"""The Relax pass that gives every Linear layer a scheduled kernel, and its report.

torch.export imports a Linear as ``matmul(x, permute_dims(W))`` with ``W`` a
constant. Each such matmul becomes a ``call_tir`` of
- the BSR kernel, with ``(data, indices, indptr)`` constants, when the weight's
  block sparsity reaches the threshold and the block shape divides the weight;
- otherwise the packed dense kernel (Relax's own matmul is left unscheduled by
  the default CPU pipeline: ~45 s per BERT-base inference).
Kernels are shared between layers of the same shape and schedule.

With ``precision="int8"`` every Linear's input is first quantised at run time
(``quantize.quantize_activation_kernel``: per-token scale and zero point -> u8, packed
``[K/4, M, 4]``; Q, K and V share one after CSE) and the layer becomes the int8 BSR
kernel (blocks spanning 4 input columns: 16x4, 4x4, 1x4, ...) or the int8 VNNI
dense kernel, weights quantised per output row at compile time. Layers whose
shape the int8 kernels cannot take (K not a multiple of 4, N not of 16) stay fp32.
On a CPU with AMX bf16, int8 builds also fuse each self-attention into one bf16
AMX kernel (``core.tvm.attention``) and run any other matmul of two activations on
bf16 tiles (``amx_bf16_matmul``), as OpenVINO's int8 model runs attention in bf16
there; fp32 builds keep them fp32.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

from core.model_source import linear_layers
from core.tvm import (
    amx_bf16_matmul,
    amx_bsr_kernel,
    bsr_format,
    bsr_kernel,
    dense_kernel,
    epilogue,
    int8_bsr_kernel,
    int8_dense_kernel,
    quantize,
)
from core.tvm.attention import fuse_attention
from core.tvm.relax_rewrite import BindingLookup, rewrite_functions

DEFAULT_THRESHOLD = 0.8
# The block shapes the BSR kernels are scheduled for (docs/tvm.md), offered by Compile and What-if.
BSR_BLOCKS = ((1, 1), (4, 1), (8, 1), (16, 1), (32, 1))
# The blocks of the int8 BSR kernel (4 input columns = one vpdpbusd lane), offered with precision int8.
INT8_BSR_BLOCKS = ((16, 4), (4, 4), (1, 4))
PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class RewriteOptions:
    """``block=None`` keeps every Linear dense (the dense TVM baseline)."""

    block: tuple[int, int] | None = (1, 1)
    threshold: float = DEFAULT_THRESHOLD
    # layer shape (m, k, n, block) -> schedule, e.g. measured by core.tvm.tuning
    schedules: dict = field(default_factory=dict)
    precision: str = "fp32"  # "int8": dynamic u8 activations x per-row int8 weights (core.tvm.quantize)
    vnni: bool | None = None  # int8 only: None = the host's CPU flags / SPARSELAB_INT8_VNNI
    amx: bool | None = None  # int8 BSR with 16*k x 4 blocks on AMX tiles: None = the CPU flags / SPARSELAB_INT8_AMX
    epilogues: bool = True  # bias, GELU, residual folded into the dense kernels' stores (core.tvm.epilogue)
    # int8 only: attention's batch matmuls in bf16 on AMX tiles (None = the CPU flags / SPARSELAB_ATTENTION_BF16)
    attention_bf16: bool | None = None

    @property
    def amx_choice(self) -> bool | None:
        """``amx``, except that forcing the int32 fallback (``vnni=False``) keeps AMX off too."""
        return False if self.vnni is False else self.amx

    @property
    def uses_attention_bf16(self) -> bool:
        """Whether attention's batch matmuls run on AMX bf16: int8 builds only, where the CPU allows."""
        return self.precision == "int8" and amx_bf16_matmul.use_bf16(self.attention_bf16)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")


@dataclass(frozen=True)
class LayerReport:
    name: str
    shape: tuple[int, int]  # (out_features, in_features)
    block: str | None
    block_sparsity: float | None
    nnz_blocks: int | None
    kernel: str  # "bsr" or "dense"
    schedule: str
    note: str = ""
    precision: str = "fp32"

    def as_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


def weight_key(weight: np.ndarray) -> str:
    """Identifies a weight matrix by content, to name Relax constants after torch modules."""
    return hashlib.blake2b(np.ascontiguousarray(weight).tobytes(), digest_size=16).hexdigest()


def linear_names(model) -> dict[str, str]:
    """``weight_key`` -> module name for every torch Linear of ``model``."""
    return {weight_key(module.weight.detach().numpy()): name for name, module in linear_layers(model).items()}


def decide(weight: np.ndarray, options: RewriteOptions) -> tuple[bsr_format.BsrMatrix | None, float | None, str]:
    """(BSR form or None if the layer stays dense, its block sparsity if measurable, why it stays dense)."""
    if options.block is None:
        return None, None, "dense build"
    block = tuple(options.block)
    if not bsr_format.divides(weight.shape, block):
        rows, cols = weight.shape
        return None, None, f"block {block[0]}x{block[1]} does not divide {rows}x{cols}: kept dense"
    sparsity = float(1.0 - bsr_format.block_mask(weight, block).mean())
    if sparsity < options.threshold:
        return None, sparsity, f"block sparsity {sparsity:.3f} < threshold {options.threshold}: kept dense"
    if options.precision == "int8" and not int8_bsr_kernel.supported_block(block):
        return None, sparsity, f"int8 BSR needs blocks of 4 input columns (16x4, 4x4, 1x4), not {block[0]}x{block[1]}"
    return bsr_format.to_bsr(weight, block), sparsity, ""


def rewrite_linears(mod, options: RewriteOptions, names: dict[str, str] | None = None):
    """``(new module, [LayerReport])``: every constant-weight matmul swapped for a kernel."""
    from tvm import relax
    from tvm.ir import Op
    from tvm.ir.expr import Constant
    from tvm.relax.expr_functor import PyExprMutator, mutator

    names = names or {}
    reports: list[LayerReport] = []
    attention_bf16 = options.uses_attention_bf16
    if attention_bf16:  # whole self-attention chains first; lone activation matmuls below
        mod, _ = fuse_attention(mod)

    @mutator
    class LinearRewriter(PyExprMutator, BindingLookup):
        def __init__(self, module):
            super().__init__(module)
            self.kernels = {}
            self.fusable = {}  # kernel name -> epilogue.KernelMaker

        def kernel(self, key, build):
            if key not in self.kernels:
                self.kernels[key] = self.builder_.add_func(build(), f"{key[0]}_{'_'.join(map(str, key[1:]))}")
            return self.kernels[key]

        def fusable_kernel(self, key, make, fusable=True):
            """``kernel`` built by ``make(epilogue)``; the epilogue pass may replace it by ``make(chosen)`` unless
            ``fusable`` is false (a padded output is sliced after the kernel: no chain to fold)."""
            gv = self.kernel(key, lambda: make(epilogue.NONE))
            if fusable:
                self.fusable[gv.name_hint] = make
            return gv

        def weight_of(self, expr):
            """The constant ``W`` when ``expr`` is ``permute_dims(W)`` of a 2-D constant, else None.

            torch.export turns some Linears (BERT's attention output, batch > 1) into
            ``bmm(x, broadcast_to(permute_dims(W), [B, K, N]))``: the broadcast is peeled.
            """
            expr = self.bound(expr)
            if isinstance(expr, relax.Call) and expr.op == Op.get("relax.broadcast_to"):
                expr = self.bound(expr.args[0])
            if not (isinstance(expr, relax.Call) and expr.op == Op.get("relax.permute_dims")):
                return None
            axes = expr.attrs.axes
            if axes is not None and [int(a) for a in axes] != [1, 0]:
                return None
            source = self.bound(expr.args[0])
            if not isinstance(source, Constant) or len(source.ty.shape) != 2:
                return None
            return source

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op != Op.get("relax.matmul") or str(call.ty.dtype) != "float32":
                return call
            constant = self.weight_of(call.args[1])
            if constant is None:
                return self.activation_matmul(call) if attention_bf16 else call
            weight = constant.value.numpy()
            return self.linear(call.args[0], weight, names.get(weight_key(weight), f"linear{len(reports)}"))

        def activation_matmul(self, call):
            """``A[.., m, k] @ B[.., k, n]`` of two activations (attention) on the AMX bf16 kernel, when it fits."""
            a, b = call.args
            try:
                a_shape, b_shape = [int(d) for d in a.ty.shape], [int(d) for d in b.ty.shape]
            except (TypeError, AttributeError):  # a symbolic shape
                return call
            if len(a_shape) < 3 or a_shape[:-2] != b_shape[:-2] or a_shape[-1] != b_shape[-2]:
                return call
            *leading, m, k = a_shape
            n, batch = b_shape[-1], int(np.prod(leading))
            if str(a.ty.dtype) != "float32" or str(b.ty.dtype) != "float32" or \
                    not amx_bf16_matmul.supported(m, k, n):
                return call
            gv = self.kernel((BF16_MATMUL_PREFIX[:-1], batch, m, k, n),
                             lambda: amx_bf16_matmul.bf16_batch_matmul(batch, m, k, n))
            if len(leading) > 1:
                a = self.builder_.emit(relax.op.reshape(a, (batch, m, k)))
                b = self.builder_.emit(relax.op.reshape(b, (batch, k, n)))
            y = self.builder_.emit(relax.call_tir(gv, [a, b], relax.TensorType((batch, m, n), "float32")))
            return y if len(leading) == 1 else relax.op.reshape(y, (*leading, m, n))

        def linear(self, x, weight, name):
            n, k = weight.shape
            leading = [int(d) for d in x.ty.shape][:-1]
            m = int(np.prod(leading))
            x2 = x if len(leading) == 1 else self.builder_.emit(relax.op.reshape(x, (m, k)))
            bsr, sparsity, note = decide(weight, options)
            block = f"{options.block[0]}x{options.block[1]}" if options.block else None
            sparsity = None if sparsity is None else round(sparsity, 4)
            int8 = options.precision == "int8" and k % 4 == 0
            if bsr is None and int8 and int8_dense_kernel.supported(k, n):
                y, label = self.dense_int8(x2, weight, m)
                reports.append(LayerReport(name, (n, k), block, sparsity, None, "dense", label, note, "int8"))
            elif bsr is None:
                note = note if not options.precision == "int8" else f"{note}; {n}x{k} kept fp32 (int8 kernels " \
                                                                      "need in % 4 == 0, out % 16 == 0)"
                y, label = self.dense(x2, weight, m)
                reports.append(LayerReport(name, (n, k), block, sparsity, None, "dense", label, note))
            elif int8:
                y, label = self.sparse_int8(x2, int8_bsr_kernel.to_int8_bsr(weight, bsr.block), m)
                reports.append(LayerReport(name, (n, k), block, sparsity, bsr.nnz_blocks, "bsr", label, "", "int8"))
            else:
                y, label = self.sparse(x2, bsr, m)
                reports.append(LayerReport(name, (n, k), block, sparsity, bsr.nnz_blocks, "bsr", label))
            return y if len(leading) == 1 else relax.op.reshape(y, (*leading, n))

        def dense(self, x2, weight, m):
            n, k = weight.shape
            schedule = dense_kernel.default_schedule(m, n)
            gv = self.fusable_kernel(("dense", m, k, n, schedule.lanes, schedule.tile),
                                     lambda chosen: dense_kernel.dense_matmul(m, k, n, schedule, chosen))
            args = [x2, relax.const(dense_kernel.pack_weight(weight, schedule.lanes))]
            return self.builder_.emit(relax.call_tir(gv, args, relax.TensorType((m, n), "float32"))), schedule.label

        def sparse(self, x2, bsr, m):
            n, k = bsr.shape
            tokens = bsr_kernel.padded_tokens(m)
            shape = bsr_kernel.BsrKernelShape(tokens, k, n, bsr.block)
            schedule = options.schedules.get(shape) or bsr_kernel.default_schedule(shape)
            gv = self.kernel(("bsr", tokens, k, n, *bsr.block, schedule.variant, schedule.tile),
                             lambda: bsr_kernel.bsr_matmul(shape, schedule))
            # XT in (shared by Q, K, V after CSE); transposes fuse into neighbouring elementwise ops
            xt = self.builder_.emit(relax.op.permute_dims(x2))
            if tokens != m:
                xt = self.builder_.emit(relax.op.nn.pad(xt, [0, 0, 0, tokens - m]))
            args = [xt, relax.const(bsr.data), relax.const(bsr.indices), relax.const(bsr.indptr)]
            out = self.builder_.emit(relax.call_tir(
                gv, args, relax.TensorType(bsr_kernel.output_shape(shape, schedule), "float32")))
            y = out if schedule.variant == "rows" else self.builder_.emit(relax.op.permute_dims(out))
            if tokens != m:
                y = self.builder_.emit(relax.op.strided_slice(y, axes=[0], begin=[0], end=[m]))
            return y, schedule.label

        def quantized(self, x2, m, k):
            """(XP u8 [K/4, tokens, 4], params [2, tokens]): the activation quantised at run time, per token."""
            tokens = quantize.padded_tokens(m)
            gv = self.kernel(("quantize", m, k, tokens), lambda: quantize.quantize_activation_kernel(m, k, tokens))
            pair = self.builder_.emit(relax.call_tir(gv, [x2], [relax.TensorType((k // 4, tokens, 4), "uint8"),
                                                               relax.TensorType((2, tokens), "float32")]))
            xp = self.builder_.emit(relax.TupleGetItem(pair, 0))
            return xp, self.builder_.emit(relax.TupleGetItem(pair, 1)), tokens

        def sliced(self, y, tokens, m):
            return y if tokens == m else self.builder_.emit(
                relax.op.strided_slice(y, axes=[0], begin=[0], end=[m]))

        def dense_int8(self, x2, weight, m):
            n, k = weight.shape
            xp, scale, tokens = self.quantized(x2, m, k)
            if amx_bsr_kernel.dense_applies(k, n, options.amx_choice):
                gv = self.fusable_kernel(
                    ("dense_amx", tokens, k, n),
                    lambda chosen: amx_bsr_kernel.amx_dense_matmul(tokens, k, n, epilogue=chosen), tokens == m)
                packed = amx_bsr_kernel.prepare_dense(weight)
                args = [xp, scale, relax.const(packed.packed), relax.const(packed.scale),
                        relax.const(packed.sums)]
                y = self.builder_.emit(relax.call_tir(gv, args, relax.TensorType((tokens, n), "float32")))
                return self.sliced(y, tokens, m), amx_bsr_kernel.dense_schedule(tokens).label
            schedule = int8_dense_kernel.default_schedule(tokens, n, options.vnni)
            gv = self.fusable_kernel(
                ("dense_int8", tokens, k, n, schedule.tile, schedule.panels, int(schedule.vnni)),
                lambda chosen: int8_dense_kernel.dense_int8_matmul(tokens, k, n, schedule, epilogue=chosen),
                tokens == m)
            packed = int8_dense_kernel.prepare_weight(weight)
            args = [xp, scale, relax.const(packed.packed), relax.const(packed.scale), relax.const(packed.sums)]
            y = self.builder_.emit(relax.call_tir(gv, args, relax.TensorType((tokens, n), "float32")))
            return self.sliced(y, tokens, m), schedule.label

        def sparse_int8(self, x2, sparse, m):
            n, k = sparse.shape
            xp, scale, tokens = self.quantized(x2, m, k)
            if amx_bsr_kernel.applies(sparse.block, options.amx_choice):
                return self.sparse_amx(xp, scale, amx_bsr_kernel.pack(sparse), tokens, m)
            shape = int8_bsr_kernel.Int8BsrShape(tokens, k, n, sparse.block)
            schedule = int8_bsr_kernel.default_schedule(shape, options.vnni)
            gv = self.kernel(("bsr_int8", tokens, k, n, *sparse.block, schedule.variant, schedule.tile,
                              int(schedule.vnni)), lambda: int8_bsr_kernel.bsr_int8_matmul(shape, schedule))
            args = [xp, scale, relax.const(sparse.data), relax.const(sparse.indices), relax.const(sparse.indptr),
                    relax.const(sparse.scale), relax.const(sparse.sums)]
            out = self.builder_.emit(relax.call_tir(
                gv, args, relax.TensorType(int8_bsr_kernel.output_shape(shape, schedule), "float32")))
            y = out if schedule.variant == "rows" else self.builder_.emit(relax.op.permute_dims(out))
            return self.sliced(y, tokens, m), schedule.label

        def sparse_amx(self, xp, scale, packed, tokens, m):
            n, k = packed.shape
            gv = self.fusable_kernel(("bsr_amx", tokens, k, n),
                                     lambda chosen: amx_bsr_kernel.amx_bsr_matmul(tokens, k, n, epilogue=chosen),
                                     tokens == m)
            args = [xp, scale, relax.const(packed.apack), relax.const(packed.cols), relax.const(packed.chunk_ptr),
                    relax.const(packed.scale), relax.const(packed.sums)]
            y = self.builder_.emit(relax.call_tir(gv, args, relax.TensorType((tokens, n), "float32")))
            return self.sliced(y, tokens, m), amx_bsr_kernel.default_schedule(tokens).label

    rewriter = LinearRewriter(mod)
    new_mod = rewrite_functions(rewriter, mod)
    new_mod = relax.transform.EliminateCommonSubexpr()(new_mod)  # one X^T per shared input (Q, K, V)
    if options.epilogues:
        new_mod = epilogue.fuse_epilogues(new_mod, rewriter.fusable)
    return relax.transform.DeadCodeElimination()(new_mod), reports


BF16_MATMUL_PREFIX = "bmm_bf16_"
BF16_KERNEL_PREFIXES = (BF16_MATMUL_PREFIX, "attention_bf16_")


def bf16_attention_calls(mod) -> int:
    """How many calls of the AMX bf16 kernels (fused attention, lone batch matmuls) ``mod``'s Relax functions
    make."""
    from tvm import relax
    from tvm.ir import Op

    call_tir, count = Op.get("relax.call_tir"), 0

    def visit(expr):
        nonlocal count
        if isinstance(expr, relax.Call) and expr.op == call_tir and isinstance(expr.args[0], relax.GlobalVar) \
                and expr.args[0].name_hint.startswith(BF16_KERNEL_PREFIXES):
            count += 1

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return count
