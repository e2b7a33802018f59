"""Vectorisable exp/erf for softmax and GELU.

LLVM has no vector ``erf``/``exp`` without a vector math library, so the
legalized softmax and GELU call scalar libm per element: 45 ms of a 355 ms
one-thread BERT-base. TVM's FastMathTransform swaps softmax/exp/erf/tanh for
TOPI's polynomial versions (float32 error ~1e-7 relative), but Relax's
``nn.gelu`` legalizes to erf inside TOPI where that pass cannot see it, so GELU
is first rewritten here as ``0.5 x (1 + fast_erf(x / sqrt 2))``.
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

    @mutator
    class GeluRewriter(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.gelu" \
                    and str(call.ty.dtype) == "float32":
                return self.builder_.call_te(gelu, call.args[0], primfunc_name_hint="fast_gelu")
            return call

    @tvm.transform.module_pass(opt_level=0, name="FastGelu")
    def fast_gelu(mod, _ctx):
        rewriter = GeluRewriter(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        return rewriter.builder_.get()

    return tvm.transform.Sequential([fast_gelu, relax.transform.FastMathTransform()])
