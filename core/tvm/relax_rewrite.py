"""What every Relax rewrite here shares: following a variable to the expression bound to it, and running a
``PyExprMutator`` over each Relax function of a module (attention fusion, layout simplification, the Linear
rewrite, epilogue fusion, fast math)."""

from __future__ import annotations


class BindingLookup:
    """Mixin for ``PyExprMutator`` classes (list it after ``PyExprMutator``: TVM's ``@mutator`` reads the first
    base): ``bound(expr)`` is the expression a ``relax.Var`` is bound to, anything else as it is."""

    def bound(self, expr):
        from tvm import relax

        return self.lookup_binding(expr) if isinstance(expr, relax.Var) else expr


def rewrite_functions(mutator, mod, before=None):
    """The module ``mutator`` (built over ``mod``) makes of ``mod``'s Relax functions; ``before(func)`` runs
    first on each one (a plan the mutator reads). Dead bindings stay for the caller's DeadCodeElimination."""
    from tvm import relax

    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            if before is not None:
                before(func)
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()
