"""Vectorisable exp/erf for softmax and GELU.

LLVM has no vector ``erf``/``exp`` without a vector math library, so the
legalized softmax and GELU call scalar libm per element: 45 ms of a 355 ms
one-thread BERT-base. TVM's FastMathTransform swaps softmax/exp/erf/tanh for
TOPI's polynomial versions (float32 error ~1e-7 relative), but Relax's
``nn.gelu`` legalizes to erf inside TOPI where that pass cannot see it, so GELU
is first rewritten here as ``0.5 x (1 + fast_erf(x / sqrt 2))``.

Softmax over the last axis (attention probabilities) becomes a hand-written kernel (``softmax_kernel``):
legalized and fused, TVM's fast softmax kept five full-size intermediates and reduced each row's max and
sum one scalar at a time: 410 us for BERT-base's 12 x 128 x 128 scores on 2 threads of an Intel Xeon
(Emerald Rapids), 5.4 ms of a 45 ms int8 sparse inference. The kernel reads a row into 16-lane partial
maxima, writes the exponentials (TOPI's fast_exp polynomial, in-register) while summing them, and scales:
95 us, error 5e-7 against numpy.

Layer norm over the last axis becomes ``layer_norm_kernel`` the same way: per row, 16-lane partial sums of x,
then of (x - mean)^2, then the normalised, scaled and shifted row. Legalized, it took 74 us per 128 x 768 call
(25 per BERT-base inference) on the same Xeon; the kernel's time is in docs/tvm.md.

GPT-2's GELU (``gelu_new``) is the tanh form with ``torch.pow(x, 3.0)``, which legalizes to a scalar
``powf`` call per element; a power by a small whole constant is rewritten as multiplications
(``x * x * x``: exact to float rounding). On GPT-2 small (seq 128, 2 threads) the 12 FFNs call it on
128 x 3072 elements each.
"""

from __future__ import annotations

import math
import operator

from core.tvm.relax_rewrite import rewrite_functions

SOFTMAX_LANES = 16


def gelu(x):
    """GELU of the te tensor ``x`` in the erf form, with TOPI's fast (polynomial, vectorisable) erf."""
    from tvm import topi

    return topi.multiply(topi.multiply(x, 0.5), topi.add(topi.fast_erf(topi.multiply(x, 1.0 / math.sqrt(2.0))), 1.0))


def fast_math_pass():
    """GELU -> fast erf, then TVM's FastMathTransform; run before legalization."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    def whole_exponent(expr) -> int | None:
        """The exponent of ``power(x, c)`` when ``c`` is a scalar constant 2, 3 or 4."""
        if not isinstance(expr, tvm.ir.expr.Constant):  # relax.const(...): TVM 0.27 keeps it in tvm.ir
            return None
        array = expr.value.numpy()
        if array.size != 1:
            return None
        value = float(array.reshape(()))
        return int(value) if value in (2.0, 3.0, 4.0) else None

    @mutator
    class GeluRewriter(PyExprMutator):
        kernels: dict = {}

        def rowwise(self, key, make, name, call, extra=()):
            """``call``'s first argument as ``[rows, n]`` through the kernel ``make()`` (one per ``key``),
            reshaped back to the call's shape."""
            rows, n, shape = _rows_of(call)
            if key not in self.kernels:
                self.kernels[key] = self.builder_.add_func(make(), name)
            x2 = self.builder_.emit(relax.op.reshape(call.args[0], (rows, n)))
            y2 = self.builder_.emit(relax.call_tir(self.kernels[key], [x2, *extra],
                                                   relax.TensorType((rows, n), "float32")))
            return relax.op.reshape(y2, shape)

        def softmax(self, call):
            """``nn.softmax`` over the last axis of a static float32 shape -> the hand-written kernel, or None."""
            if _softmax_shape(call) is None:
                return None
            rows, n = _softmax_shape(call)
            return self.rowwise(("softmax", rows, n), lambda: softmax_kernel(rows, n), f"softmax_{rows}_{n}", call)

        def layer_norm(self, call):
            """``nn.layer_norm`` over the last axis of a static float32 shape -> ``layer_norm_kernel``, or None."""
            axes = [int(a) for a in call.attrs.axes]
            if _rows_of(call) is None or axes not in ([-1], [len(call.ty.shape) - 1]) \
                    or not (call.attrs.center and call.attrs.scale):
                return None
            rows, n, _ = _rows_of(call)
            epsilon = float(call.attrs.epsilon)
            return self.rowwise(("layer_norm", rows, n, epsilon), lambda: layer_norm_kernel(rows, n, epsilon),
                                f"layer_norm_{rows}_{n}", call, (call.args[1], call.args[2]))

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if not isinstance(call.op, tvm.ir.Op) or str(getattr(call.ty, "dtype", "")) != "float32":
                return call
            if call.op.name == "relax.nn.softmax" and (fast := self.softmax(call)) is not None:
                return fast
            if call.op.name == "relax.nn.layer_norm" and (fast := self.layer_norm(call)) is not None:
                return fast
            if call.op.name == "relax.nn.gelu":
                return self.builder_.call_te(gelu, call.args[0], primfunc_name_hint="fast_gelu")
            if call.op.name == "relax.power" and (exponent := whole_exponent(call.args[1])) is not None:
                product = call.args[0]
                for _ in range(exponent - 1):
                    product = self.builder_.emit(relax.op.multiply(product, call.args[0]))
                return product
            return call

    @tvm.transform.module_pass(opt_level=0, name="FastGelu")
    def fast_gelu(mod, _ctx):
        rewriter = GeluRewriter(mod)
        rewriter.kernels = {}
        return rewrite_functions(rewriter, mod)

    return tvm.transform.Sequential([fold_masked_softmax_pass(), fast_gelu, relax.transform.FastMathTransform()])


def fold_masked_softmax_pass():
    """``where(all(x == -inf, axis=-1), 0, softmax(x))`` -> ``softmax(x)`` where ``softmax_kernel`` will run it.

    transformers' attention zeroes the rows whose scores are all -inf (fully masked) after the softmax; exported,
    that is equal, logical_not, astype, a max over the row, astype, logical_not, full_like and where: per BERT-base
    layer a second pass over the 12 x 128 x 128 scores (104 us, 1.25 ms per inference on 2 threads of an Intel
    Xeon) plus the where (0.43 ms). ``softmax_kernel`` writes zeros for such a row itself, so the chain is
    dropped, only for the softmaxes the kernel takes (TVM's own softmax would give NaN there)."""
    import tvm
    from tvm import relax
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    scores, minus_inf, fill = wildcard(), wildcard(), wildcard()
    softmax = is_op("relax.nn.softmax")(scores)
    row_has_finite = is_op("relax.max")(is_op("relax.astype")(is_op("relax.logical_not")(
        is_op("relax.equal")(scores, minus_inf))))
    fully_masked = is_op("relax.logical_not")(is_op("relax.astype")(row_has_finite))
    zeros = is_op("relax.full_like")(softmax, fill) | fill  # full_like(probs, 0) (BERT) or a scalar 0
    pattern = is_op("relax.where")(fully_masked, zeros, softmax)

    def fold(expr, matches):
        call = matches[softmax]
        if not (_is_scalar(matches[minus_inf], float("-inf")) and _is_scalar(matches[fill], 0.0)
                and _softmax_shape(call) is not None):
            return expr
        return call

    @tvm.transform.module_pass(opt_level=0, name="FoldMaskedSoftmax")
    def fold_pass(mod, _ctx):
        for gv, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                mod[gv] = rewrite_call(pattern, fold, func)
        return mod

    return fold_pass


def _is_scalar(expr, value: float) -> bool:
    import tvm

    if not isinstance(expr, tvm.ir.expr.Constant):  # relax.const: TVM 0.27 keeps it in tvm.ir
        return False
    array = expr.value.numpy()
    return array.size == 1 and float(array.reshape(())) == value


def _rows_of(call) -> tuple[int, int, list[int]] | None:
    """(rows, n, shape) of a call's static float32 result whose last axis is a multiple of 16, else None: what
    the row-wise kernels here take (every axis but the last flattened into rows)."""
    import tvm

    if str(getattr(call.ty, "dtype", "")) != "float32":
        return None
    shape = [int(d) if isinstance(d, tvm.tirx.IntImm) else None for d in call.ty.shape]
    if None in shape or not shape or shape[-1] % SOFTMAX_LANES:
        return None
    return math.prod(shape[:-1]), shape[-1], shape


def _softmax_shape(call) -> tuple[int, int] | None:
    """(rows, n) when ``softmax_kernel`` takes this ``nn.softmax`` call: static float32, last axis, n % 16 == 0."""
    rows = _rows_of(call)
    if rows is None or int(call.attrs.axis) not in (-1, len(rows[2]) - 1):
        return None
    return rows[0], rows[1]


def _fast_exp(x):
    """TOPI's ``fast_exp`` (Cephes polynomial, relative error ~1e-7) on a TIR expression: vectorises."""
    from tvm.script import tirx as T

    c = T.max(T.min(x, T.float32(88.3762626647949)), T.float32(-88.3762626647949))
    k = T.floor(c * T.float32(1.44269504088896341) + T.float32(0.5))
    r = c - k * T.float32(0.693359375) - k * T.float32(-2.12194440e-4)
    p = ((((((T.float32(1.9875691500e-4) * r + T.float32(1.3981999507e-3)) * r + T.float32(8.3334519073e-3)) * r
            + T.float32(4.1665795894e-2)) * r + T.float32(1.6666665459e-1)) * r + T.float32(5.0000001201e-1)) * r * r
         + r + T.float32(1.0))
    return T.reinterpret("float32", T.shift_left(T.Cast("int32", k) + 127, 23)) * p


def _fast_erf(x):
    """TOPI's ``fast_erf`` (Eigen's rational approximation on [-4, 4], error < 1e-7) on a TIR expression:
    vectorises, where ``T.erf`` calls scalar libm ``erff`` per element."""
    from tvm.script import tirx as T

    c = T.max(T.min(x, T.float32(4.0)), T.float32(-4.0))
    c2 = c * c
    p = T.float32(-2.72614225801306e-10)
    for alpha in (2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05, -7.34990630326855e-04,
                  -2.95459980854025e-03, -1.60960333262415e-02):
        p = p * c2 + T.float32(alpha)
    q = T.float32(-1.45660718464996e-05)
    for beta in (-2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03, -1.42647390514189e-02):
        q = q * c2 + T.float32(beta)
    return c * p / q


def gelu_value(x):
    """GELU (erf form) of a float32 TIR expression, with ``_fast_erf``: the dense kernel's epilogue."""
    from tvm.script import tirx as T

    return x * T.float32(0.5) * (_fast_erf(x * T.float32(1.0 / math.sqrt(2.0))) + T.float32(1.0))


def across_lanes(buffer, lanes: int, combine):
    """``combine`` (``T.max``, ``operator.add``) of a float32 ``buffer``'s first ``lanes`` values as a tree of
    halves (4 steps for 16 lanes; a loop over the lanes was a chain of 15 dependent operations: 17 us of a 120 us
    attention call, BERT-base, 2 threads)."""
    from tvm import tirx

    vector = buffer.vload([0], f"float32x{lanes}")
    while lanes > 1:
        half = lanes // 2
        vector = combine(tirx.Shuffle([vector], list(range(half))), tirx.Shuffle([vector], list(range(half, lanes))))
        lanes = half
    return vector


def softmax_kernel(rows: int, n: int):
    """PrimFunc ``X[rows, n] -> softmax over n`` (``n`` a multiple of 16), parallel over rows; a row that is all
    -inf (fully masked) gives zeros."""
    from tvm.script import tirx as T

    lanes = SOFTMAX_LANES
    chunks = n // lanes

    @T.prim_func(private=True, s_tir=True)
    def kernel(x: T.Buffer((rows, n), "float32"), y: T.Buffer((rows, n), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        with T.sblock("root"):  # Relax's op-pattern analysis wants a block at the top
            for i in T.parallel(rows):
                partial = T.decl_buffer((lanes,), "float32", scope="global")
                total = T.decl_buffer((2,), "float32", scope="global")  # the row's max, then 1 / sum
                for v in T.vectorized(lanes):
                    partial[v] = x[i, v]
                for j in range(1, chunks):
                    for v in T.vectorized(lanes):
                        partial[v] = T.max(partial[v], x[i, j * lanes + v])
                total[0] = across_lanes(partial, lanes, T.max)
                if total[0] == T.float32("-inf"):  # a fully masked row: zeros, as transformers' attention does
                    for j in range(chunks):
                        for v in T.vectorized(lanes):
                            y[i, j * lanes + v] = T.float32(0)
                else:
                    for v in T.vectorized(lanes):
                        partial[v] = T.float32(0)
                    for j in range(chunks):
                        for v in T.vectorized(lanes):
                            y[i, j * lanes + v] = _fast_exp(x[i, j * lanes + v] - total[0])
                            partial[v] = partial[v] + y[i, j * lanes + v]
                    total[1] = T.float32(1) / across_lanes(partial, lanes, operator.add)
                    for j in range(chunks):
                        for v in T.vectorized(lanes):
                            y[i, j * lanes + v] = y[i, j * lanes + v] * total[1]

    return kernel.with_attr("op_pattern", 8)


def layer_norm_kernel(rows: int, n: int, epsilon: float):
    """PrimFunc ``(X[rows, n], gamma[n], beta[n]) -> Y``: layer norm over n (a multiple of 16), parallel rows."""
    from tvm.script import tirx as T

    lanes = SOFTMAX_LANES
    chunks = n // lanes

    @T.prim_func(private=True, s_tir=True)
    def kernel(x: T.Buffer((rows, n), "float32"), gamma: T.Buffer((n,), "float32"), beta: T.Buffer((n,), "float32"),
               y: T.Buffer((rows, n), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        with T.sblock("root"):
            for i in T.parallel(rows):
                partial = T.decl_buffer((lanes,), "float32", scope="global")
                stats = T.decl_buffer((2,), "float32", scope="global")  # the row's mean, then 1 / std
                for v in T.vectorized(lanes):
                    partial[v] = T.float32(0)
                for j in range(chunks):
                    for v in T.vectorized(lanes):
                        partial[v] = partial[v] + x[i, j * lanes + v]
                stats[0] = across_lanes(partial, lanes, operator.add) / T.float32(n)
                for v in T.vectorized(lanes):
                    partial[v] = T.float32(0)
                for j in range(chunks):
                    for v in T.vectorized(lanes):
                        partial[v] = partial[v] + (x[i, j * lanes + v] - stats[0]) * (x[i, j * lanes + v] - stats[0])
                stats[1] = T.float32(1) / T.sqrt(across_lanes(partial, lanes, operator.add)
                                                 / T.float32(n) + T.float32(epsilon))
                for j in range(chunks):
                    for v in T.vectorized(lanes):
                        y[i, j * lanes + v] = (x[i, j * lanes + v] - stats[0]) * stats[1] * gamma[j * lanes + v] \
                            + beta[j * lanes + v]

    return kernel.with_attr("op_pattern", 8)
