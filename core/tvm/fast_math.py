"""Vectorisable exp/erf for softmax and GELU.

LLVM has no vector ``erf``/``exp`` without a vector math library, so the
legalized softmax and GELU call scalar libm per element: 45 ms of a 355 ms
one-thread BERT-base. TVM's FastMathTransform swaps softmax/exp/erf/tanh for
TOPI's polynomial versions (float32 error ~1e-7 relative), but Relax's
``nn.gelu`` legalizes to erf inside TOPI where that pass cannot see it, so GELU
is first rewritten here as ``0.5 x (1 + fast_erf(x / sqrt 2))``.

GPT-2's GELU (``gelu_new``) is the tanh form with ``torch.pow(x, 3.0)``, which legalizes to a scalar
``powf`` call per element; a power by a small whole constant is rewritten as multiplications
(``x * x * x``: exact to float rounding). On GPT-2 small (seq 128, 2 threads) the 12 FFNs call it on
128 x 3072 elements each.
"""

from __future__ import annotations

import math


def fast_math_pass():
    """GELU -> fast erf, then TVM's FastMathTransform; run before legalization."""
    import tvm
    from tvm import relax, topi
    from tvm.relax.expr_functor import PyExprMutator, mutator

    def gelu(x):
        return topi.multiply(topi.multiply(x, 0.5),
                             topi.add(topi.fast_erf(topi.multiply(x, 1.0 / math.sqrt(2.0))), 1.0))

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
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if not isinstance(call.op, tvm.ir.Op) or str(getattr(call.ty, "dtype", "")) != "float32":
                return call
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
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        return rewriter.builder_.get()

    return tvm.transform.Sequential([fast_gelu, relax.transform.FastMathTransform()])
