"""Fuse self-attention into one AMX bf16 kernel (int8 builds on AMX CPUs): the Relax pass and its checks.

torch.export gives BERT's attention as some 30 Relax ops per layer: Q, K and V reshaped and transposed into heads
(each a full copy), ``Q K^T`` scaled, a reshape, the mask added, softmax, transformers' masked-row ``where``, ``P V``
and three transposes back. Outside the Linear kernels this was the largest cost of an int8 sparse build: BERT-base,
90% in 16x4 blocks, Intel Xeon VM with AMX, 2 threads, per inference: K's transpose 0.53 ms, softmax 0.50, the
mask add 0.31, the two bf16 matmuls 0.78, head merge 0.21, V and Q splits 0.33: 2.7 of 7.9 ms.

``fuse_attention`` finds ``matmul(P, V)`` whose P is the softmax of ``matmul(Q, K^T) + mask`` and replaces the
whole chain with ``amx_bf16_matmul.attention_kernel``, which reads Q, K and V in the Linear layers' own
[tokens, heads * dim] layout and writes the context in it. The layout is not trusted to a pattern: each operand's
chain of reshape / permute_dims / broadcast_to (and multiplications by a scalar: the 1/sqrt(d) scales) is replayed on
an array of element indices (``index_map``), which must equal the head split the kernel assumes; anything else is
left alone. The context is handed back in the [batch * heads, seq, dim] shape the rest of the graph expects, and
``simplify_layouts`` then turns a chain of reshapes and transposes that comes back to the source order (the head
merge after the head split) into one reshape, which costs nothing.
"""

from __future__ import annotations

import math

import numpy as np

from core.tvm import amx_bf16_matmul
from core.tvm.relax_rewrite import BindingLookup, rewrite_functions

LAYOUT_OPS = ("relax.reshape", "relax.permute_dims", "relax.broadcast_to")
MAX_INDEX_ELEMENTS = 1 << 24  # index maps are replayed in numpy: larger tensors are left alone


def _shape(expr) -> tuple[int, ...] | None:
    try:
        return tuple(int(d) for d in expr.ty.shape)
    except (TypeError, AttributeError, ValueError):  # symbolic or not a tensor
        return None


def _scalar(expr) -> float | None:
    import tvm

    if not isinstance(expr, tvm.ir.expr.Constant):  # relax.const (TVM 0.27 keeps it in tvm.ir)
        return None
    value = expr.value.numpy()
    return float(value.reshape(())) if value.size == 1 else None


def peel(bound, expr, scales: bool = True):
    """``(source, ops, scale)``: walk ``expr`` back through layout ops (and multiplications by a scalar constant
    when ``scales``) to the first other value. ``ops`` are the layout calls from the source forward."""
    ops, scale = [], 1.0
    while True:
        call = bound(expr)
        name = getattr(getattr(call, "op", None), "name", None)
        if name in LAYOUT_OPS:
            ops.append(call)
            expr = call.args[0]
        elif scales and name == "relax.multiply" and _scalar(call.args[1]) is not None:
            scale *= _scalar(call.args[1])
            expr = call.args[0]
        elif scales and name == "relax.multiply" and _scalar(call.args[0]) is not None:
            scale *= _scalar(call.args[0])
            expr = call.args[1]
        else:
            return expr, ops[::-1], scale


def index_map(source_shape, ops) -> np.ndarray | None:
    """The source's flat element index at every position of the last op's result, or None when an op is not a
    pure relayout (a real broadcast) or a shape is not static."""
    if source_shape is None or math.prod(source_shape) > MAX_INDEX_ELEMENTS:
        return None
    index = np.arange(math.prod(source_shape)).reshape(source_shape)
    for call in ops:
        shape = _shape(call)
        if shape is None:
            return None
        if call.op.name == "relax.permute_dims":
            axes = call.attrs.axes
            index = index.transpose(None if axes is None else [int(a) for a in axes])
        elif call.op.name == "relax.reshape" or shape == index.shape:
            index = index.reshape(shape)
        else:  # broadcast_to that repeats elements
            return None
    return index


def heads_layout(batch: int, seq: int, heads: int, dim: int, transposed: bool = False) -> np.ndarray:
    """Element indices of [tokens, heads * dim] as [batch * heads, seq, dim] (``transposed``: [.., dim, seq])."""
    index = np.arange(batch * seq * heads * dim).reshape(batch, seq, heads, dim)
    index = index.transpose(0, 2, 3, 1) if transposed else index.transpose(0, 2, 1, 3)
    return index.reshape(batch * heads, *index.shape[2:])


def _maps_to(bound, expr, expected: np.ndarray, scales: bool = True):
    """(source, scale) when ``expr`` is ``expected``'s relayout of its source, else None."""
    source, ops, scale = peel(bound, expr, scales)
    index = index_map(_shape(source), ops)
    if index is None or index.shape != expected.shape or not np.array_equal(index, expected):
        return None
    return source, scale


def fuse_attention(mod):
    """``(module, fused)``: every self-attention chain the kernel takes, replaced by it (see the module doc)."""
    from tvm import relax
    from tvm.ir import Op
    from tvm.relax.expr_functor import PyExprMutator, mutator

    fused = [0]

    @mutator
    class AttentionFuser(PyExprMutator, BindingLookup):
        def __init__(self, module):
            super().__init__(module)
            self.kernels = {}

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op != Op.get("relax.matmul"):
                return call
            fused_call = self.attention(call)
            return call if fused_call is None else fused_call

        def probabilities(self, expr):
            """The softmax's input when ``expr`` is softmax(x) over the last axis, or transformers' masked-row
            ``where(all(x == -inf), 0, softmax(x))`` of it (the kernel writes those rows as zeros)."""
            call = self.bound(expr)
            if getattr(getattr(call, "op", None), "name", None) == "relax.where":
                condition, zeros, call = call.args[0], call.args[1], self.bound(call.args[2])
                if not self.masked_rows(condition, call) or not self.zeros(zeros):
                    return None
            if getattr(getattr(call, "op", None), "name", None) != "relax.nn.softmax":
                return None
            rank = len(_shape(call) or ())
            return call.args[0] if int(call.attrs.axis) in (-1, rank - 1) else None

        def masked_rows(self, condition, softmax) -> bool:
            """``condition`` is not(max(not(x == -inf))) over the last axis, x the softmax's input."""
            chain = []
            expr = condition
            for _ in range(8):
                call = self.bound(expr)
                name = getattr(getattr(call, "op", None), "name", None)
                if name not in ("relax.logical_not", "relax.astype", "relax.max", "relax.equal"):
                    return False
                chain.append(name)
                if name == "relax.equal":
                    return (chain.count("relax.max") == 1 and _scalar(call.args[1]) == float("-inf")
                            and call.args[0].same_as(softmax.args[0]))
                expr = call.args[0]
            return False

        def zeros(self, expr) -> bool:
            call = self.bound(expr)
            if getattr(getattr(call, "op", None), "name", None) == "relax.full_like":
                return _scalar(call.args[1]) == 0.0
            return _scalar(expr) == 0.0

        def attention(self, call):
            pv_shape = _shape(call)
            if pv_shape is None or len(pv_shape) != 3 or str(call.ty.dtype) != "float32":
                return None
            p_source, p_ops, p_scale = peel(self.bound, call.args[0])
            scores_in = self.probabilities(p_source)
            if scores_in is None or p_scale != 1.0:
                return None
            added = self.bound(scores_in)
            four = _shape(added)
            if getattr(getattr(added, "op", None), "name", None) != "relax.add" or four is None or len(four) != 4:
                return None
            batch, heads, seq, keys = four
            dim = pv_shape[-1]
            if seq != keys or pv_shape != (batch * heads, seq, dim) or not amx_bf16_matmul.attention_supported(
                    seq, dim):
                return None
            # P: the softmax's [batch, heads, seq, seq] as [batch * heads, seq, seq]
            if not np.array_equal(index_map(four, p_ops), np.arange(math.prod(four)).reshape(pv_shape[0], seq, seq)):
                return None
            for scores_arg, mask in ((added.args[0], added.args[1]), (added.args[1], added.args[0])):
                scores_source, s_ops, s_scale = peel(self.bound, scores_arg)
                scores = self.bound(scores_source)
                if getattr(getattr(scores, "op", None), "name", None) != "relax.matmul":
                    continue
                if not np.array_equal(index_map(_shape(scores), s_ops), np.arange(math.prod(four)).reshape(four)):
                    continue
                mask_shape = _shape(mask)
                if mask_shape is None or len(mask_shape) != 4 or str(mask.ty.dtype) != "float32" or \
                        mask_shape[0] not in (1, batch) or mask_shape[1] != 1 or mask_shape[2] not in (1, seq) or \
                        mask_shape[3] != seq:
                    continue
                q = _maps_to(self.bound, scores.args[0], heads_layout(batch, seq, heads, dim))
                k = _maps_to(self.bound, scores.args[1], heads_layout(batch, seq, heads, dim, transposed=True))
                v = _maps_to(self.bound, call.args[1], heads_layout(batch, seq, heads, dim), scales=False)
                if q is None or k is None or v is None:
                    continue
                return self.fused(q, k, v, mask, s_scale, batch, heads, seq, dim)
            return None

        def fused(self, q, k, v, mask, s_scale, batch, heads, seq, dim):
            tokens, width, mask_batch = batch * seq, heads * dim, _shape(mask)[0]
            q_scale, k_scale = q[1] * s_scale, k[1]
            key = ("attention_bf16", batch, heads, seq, dim, mask_batch, q_scale, k_scale)
            if key not in self.kernels:
                kernel = amx_bf16_matmul.attention_kernel(batch, heads, seq, dim, mask_batch, q_scale, k_scale)
                self.kernels[key] = self.builder_.add_func(
                    kernel, f"attention_bf16_{batch}_{heads}_{seq}_{dim}_{len(self.kernels)}")
            flat = [self.builder_.emit(relax.op.reshape(source, (tokens, width))) for source, _ in (q, k, v)]
            mask3 = self.builder_.emit(relax.op.reshape(relax.op.broadcast_to(mask, (mask_batch, 1, seq, seq)),
                                                        (mask_batch, seq, seq)))
            out = self.builder_.emit(relax.call_tir(self.kernels[key], [*flat, mask3],
                                                    relax.TensorType((tokens, width), "float32")))
            fused[0] += 1
            heads_first = relax.op.permute_dims(relax.op.reshape(out, (batch, seq, heads, dim)), [0, 2, 1, 3])
            return relax.op.reshape(heads_first, (batch * heads, seq, dim))

    new_mod = relax.transform.DeadCodeElimination()(rewrite_functions(AttentionFuser(mod), mod))
    return simplify_layouts(new_mod), fused[0]


def simplify_layouts(mod):
    """Every reshape whose chain of reshapes and transposes puts its source's elements back in their own order
    becomes one reshape of the source (a view: no copy)."""
    from tvm import relax
    from tvm.ir import Op
    from tvm.relax.expr_functor import PyExprMutator, mutator

    @mutator
    class Simplifier(PyExprMutator, BindingLookup):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op != Op.get("relax.reshape"):
                return call
            source, ops, _ = peel(self.bound, call, scales=False)
            if not any(op.op.name == "relax.permute_dims" for op in ops):
                return call
            index = index_map(_shape(source), ops)
            if index is None or not np.array_equal(index.reshape(-1), np.arange(index.size)):
                return call
            return relax.op.reshape(source, call.args[1])

    return relax.transform.DeadCodeElimination()(rewrite_functions(Simplifier(mod), mod))
