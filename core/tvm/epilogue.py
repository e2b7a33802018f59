"""Bias, GELU and residual adds folded into the dense kernels' stores (an epilogue), instead of passes of their own.

After ``bsr_rewrite`` swaps each Linear for a dense kernel, BERT's graph still runs what follows the matmul as
separate elementwise kernels, each reading and writing the whole ``[tokens, features]`` output again:

    y = dense(x, W)                   the kernel (opaque to FuseOps: its schedule must survive)
    z = add(bias, y)                  every Linear
    gelu(reshape(z))                  the FFN's first Linear
    add(reshape(z), residual)         the attention output and the FFN's second Linear (then layer norm)

``fuse_epilogues`` finds these chains (each intermediate used once) and calls a variant of the same kernel that
adds the bias, applies GELU and adds the residual while its accumulator is still in registers. Measured where
``docs/tvm.md`` says (BERT-base, seq 128, 2 threads): those passes were ~1.2 ms of a 55 ms fp32 inference on
AMD Zen 5, ~3.5 of 151 ms on an Intel Xeon.

Every fusable kernel (dense fp32, dense int8 on VNNI, dense and BSR int8 on AMX) takes all three: its store is
TIR, and ``applied`` writes the epilogue as TIR expressions (GELU as ``fast_math.gelu_value``, the erf form with
a vectorised fast erf; the int8 kernels apply it to the dequantised value). Until session 14 GELU was a te stage
only the fp32 kernel could take, and the int8 builds ran it as a pass of its own (0.7 ms of an 8 ms BERT-base int8
90% inference on the AMX Xeon VM).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from core.tvm.relax_rewrite import rewrite_functions


@dataclass(frozen=True)
class Epilogue:
    """What a dense kernel applies to its output before storing it, in this order."""

    bias: bool = False  # + bias[feature]
    gelu: bool = False  # GELU (erf form) of the biased value
    residual: bool = False  # + residual[token, feature]

    def __bool__(self) -> bool:
        return self.bias or self.gelu or self.residual

    @property
    def suffix(self) -> str:
        """``"_bias_gelu"`` ...: appended to the kernel's name and schedule label."""
        return "".join(f"_{name}" for name in ("bias", "gelu", "residual") if getattr(self, name))

    def applied(self, value, token, feature, bias=None, residual=None):
        """``value`` (a TIR expression: the accumulation for ``[token, feature]``) with this epilogue applied;
        ``bias`` [n] and ``residual`` [m, n] are the kernel's buffers (unused ones may be None)."""
        from core.tvm.fast_math import gelu_value

        if self.bias:
            value = value + bias[feature]
        if self.gelu:
            value = gelu_value(value)
        if self.residual:
            value = value + residual[token, feature]
        return value

    def trimmed(self, kernel, *unused: str):
        """``kernel``, a PrimFunc written with every optional operand as a parameter (``bias``, ``residual``), without
        those this epilogue does not read nor the ``unused`` others (``without_params``)."""
        return without_params(kernel, {*unused, *(() if self.bias else ("bias",)),
                                       *(() if self.residual else ("residual",))})


def without_params(kernel, names):
    """The PrimFunc ``kernel`` without its parameters called ``names``, which its body must not read: one TVMScript
    kernel with every optional operand serves every variant's signature (with or without a bias, a residual, or
    the scales of a raw int32 variant)."""
    from tvm import tirx

    names = set(names)
    return tirx.PrimFunc([param for param in kernel.params if param.name not in names], kernel.body,
                         attrs=kernel.attrs)


NONE = Epilogue()


# What the pass may replace a kernel by: ``make(epilogue)`` builds its variant, taking the same arguments
# followed by the bias ``[n]`` and the residual ``[m, n]`` the epilogue asks for.
KernelMaker = Callable[[Epilogue], object]


@dataclass(frozen=True)
class _Chain:
    dense: object  # the call_tir of the plain kernel
    epilogue: Epilogue
    bias: object  # the bias constant
    residual: object | None  # the residual var

    @property
    def name(self) -> str:
        return self.dense.args[0].name_hint

    @property
    def shape(self) -> list[int]:
        """``[m, n]``: the plain kernel's output, and its variant's."""
        return [int(d) for d in self.dense.ty.shape]


def fuse_epilogues(mod, fusable: dict[str, KernelMaker]):
    """``mod`` with every (bias | bias + GELU | bias + residual) chain after a ``fusable`` kernel folded into a
    variant of that kernel (keyed by the kernel's global name). The plain calls left dead are for the caller's
    DeadCodeElimination to remove."""
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    if not fusable:
        return mod

    @mutator
    class EpilogueFuser(PyExprMutator):
        def __init__(self, module):
            super().__init__(module)
            self.kernels = {}
            self.plan = {}

        def visit_call_(self, call):
            chain = self.plan.get(call)
            if chain is None:
                return super().visit_call_(call)
            name = chain.name + chain.epilogue.suffix
            if name not in self.kernels:
                self.kernels[name] = self.builder_.add_func(fusable[chain.name](chain.epilogue), name)
            m, n = chain.shape
            args = [self.visit_expr(arg) for arg in chain.dense.args[1].fields]
            args.append(chain.bias)
            if chain.residual is not None:
                residual = self.visit_expr(chain.residual)
                if [int(d) for d in residual.ty.shape] != [m, n]:
                    residual = self.builder_.emit(relax.op.reshape(residual, (m, n)))
                args.append(residual)
            y = self.builder_.emit(relax.call_tir(self.kernels[name], args, relax.TensorType((m, n), "float32")))
            shape = [int(d) for d in call.ty.shape]
            return y if shape == [m, n] else relax.op.reshape(y, shape)

    fuser = EpilogueFuser(mod)
    return rewrite_functions(fuser, mod, before=lambda func: setattr(fuser, "plan", _plan(func, fusable)))


def _plan(func, fusable: dict[str, KernelMaker]) -> dict:
    """``{call ending a chain: _Chain}`` for ``func``: the longest chain after each fusable kernel, every
    intermediate value used exactly once."""
    from tvm import relax
    from tvm.ir import Op
    from tvm.ir.expr import Constant

    if not isinstance(func.body, relax.SeqExpr):
        return {}
    bindings, uses, order = {}, Counter(), []
    for block in func.body.blocks:
        for binding in block.bindings:
            if isinstance(binding, relax.VarBinding):
                bindings[binding.var] = binding.value
                order.append(binding.var)
            for var in relax.analysis.free_vars(binding.value):
                uses[var] += 1
    for var in relax.analysis.free_vars(func.body.body):
        uses[var] += 1

    def value(var):
        return bindings.get(var) if isinstance(var, relax.Var) else None

    def is_op(expr, name):
        return isinstance(expr, relax.Call) and isinstance(expr.op, Op) and expr.op.name == name

    def single(var, path):
        """``var`` followed through aliases (``a = b``), each used once; appends them to ``path``."""
        while isinstance(var, relax.Var) and uses[var] == 1:
            path.append(var)
            bound = value(var)
            if not isinstance(bound, relax.Var):
                return bound
            var = bound
        return None

    def dense_call(var, path):
        call = single(var, path)
        if is_op(call, "relax.call_tir") and call.args[0].name_hint in fusable:
            return call
        return None

    def add_of(var, path):
        """The ``add`` behind ``var`` (through an optional reshape), every step used once; else None."""
        bound = single(var, path)
        if is_op(bound, "relax.reshape") and isinstance(bound.args[0], relax.Var):
            bound = single(bound.args[0], path)
        return bound if is_op(bound, "relax.add") else None

    def bias_pair(add, path):
        """(dense call, bias) when ``add`` is ``add(bias, dense(...))`` in either order, else None."""
        if add is None:
            return None
        for y, bias in (add.args, add.args[::-1]):
            call = dense_call(y, path) if isinstance(y, relax.Var) else None
            if call is None:
                continue
            n = int(call.ty.shape[1])
            if isinstance(bias, Constant) and [int(d) for d in bias.ty.shape] == [n] \
                    and str(bias.ty.dtype) == "float32":
                return call, bias
        return None

    chains, taken = {}, set()
    for var in reversed(order):  # chain ends last: the longest chain claims its inner values first
        call, path, found = bindings[var], [var], None
        if var in taken or not isinstance(call, relax.Call) or str(getattr(call.ty, "dtype", "")) != "float32":
            continue
        if is_op(call, "relax.nn.gelu") and isinstance(call.args[0], relax.Var):
            pair = bias_pair(add_of(call.args[0], path), path)
            if pair:
                found = (*pair, Epilogue(bias=True, gelu=True), None)
        elif is_op(call, "relax.add"):
            for side, other in (call.args, call.args[::-1]):
                trial = [var]
                pair = bias_pair(add_of(side, trial), trial) if isinstance(side, relax.Var) else None
                if pair and isinstance(other, relax.Var) \
                        and [int(d) for d in other.ty.shape] == [int(d) for d in call.ty.shape]:
                    path, found = trial, (*pair, Epilogue(bias=True, residual=True), other)
                    break
            if found is None:
                pair = bias_pair(call, path)
                found = (*pair, Epilogue(bias=True), None) if pair else None
        if found and not taken.intersection(path):
            dense, bias, epilogue, residual = found
            taken.update(path)
            chains[call] = _Chain(dense, epilogue, bias, residual)
    return chains

