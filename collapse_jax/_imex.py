"""An IMEX Runge--Kutta solver for diffrax whose implicit part is solved exactly.

The fast parts of the projection model (the relaxations of `W` and `y`, docs/theory.md §6) are
affine in the fast variables once the slow ones are fixed. Diffrax's
`diffrax.KenCarp4` treats such a split with a Newton (chord) iteration on a dense
Jacobian of the whole state, which costs more than the model itself (measured: no
finish within 400 s). [`StageSolveKenCarp4`][collapse_jax.StageSolveKenCarp4] runs the same
Kennedy--Carpenter ARK4(3)6L[2]SA tableaux, taken from `diffrax.KenCarp4` itself, but asks the
caller for the exact solution of each implicit stage equation

    U = R + eta * f_I(t, U, args),

which for an `f_I` affine in `U` is a linear solve the caller can do with its structure (for
the projection model: a `d x d` system, see
[`collapse_jax.reduced.ReducedField.stage_solve`][collapse_jax.ReducedField.stage_solve]).
There is no Newton iteration, no Jacobian and no failed stage: a step is rejected only by the error
controller. Error estimate and 3rd-order dense output are KenCarp4's.

Use with ``terms = diffrax.MultiTerm(diffrax.ODETerm(f_E), diffrax.ODETerm(f_I))`` and an
adaptive step-size controller, as for `diffrax.KenCarp4`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

__all__ = [
    "AbstractStageSolveARK",
    "StageSolveKenCarp3",
    "StageSolveKenCarp4",
    "StageSolveKenCarp5",
]


class AbstractStageSolveARK(diffrax.AbstractAdaptiveSolver):
    """A Kennedy--Carpenter ARK pair with a caller-supplied exact solver for the implicit
    stages (the tableaux, order and dense output of ``reference``).

    Attributes:
        stage_solve: ``stage_solve(t, R, eta, args) -> U`` returning the solution of
            `U = R + eta f_I(t, U, args)`; it must be exact (it replaces the Newton
            iteration), which the tests check against `f_I` for every use in this package.
        partition: optional ``(split, merge)`` for a *partitioned* split, where the explicit
            part vanishes on some leaves of the state (the fast ones) and the implicit part on
            all others (the slow ones): ``split(y) -> (slow, fast)`` and
            ``merge(slow, fast) -> y``. The step then combines the explicit stages on the
            slow leaves only and the implicit stages on the fast leaves only (half the
            arithmetic of combining whole states, which carry zeros in the other half) and
            evaluates each stage's explicit part at the stage's slow values and solved fast
            values. The result is the same step (the tests compare the two paths); it is
            faster because the step is made of many small operations and this drops a third
            of them (docs/performance.md). ``stage_solve`` must leave the slow leaves of its
            argument unchanged, as the exact solution does.
    """

    stage_solve: Callable
    partition: tuple[Callable, Callable] | None = None
    term_structure: ClassVar = diffrax.MultiTerm[tuple[diffrax.AbstractTerm, diffrax.AbstractTerm]]
    reference: ClassVar[type]

    def order(self, terms):
        return self.reference().order(terms)

    def init(self, terms, t0, t1, y0, args):
        return None

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        if self.partition is not None:
            return self._step_partitioned(terms, t0, t1, y0, args)
        explicit, implicit = terms.terms
        control = explicit.contr(t0, t1)
        h = t1 - t0
        explicit_tab, implicit_tab = self.reference.tableau.tableaus
        gamma = float(implicit_tab.a_diagonal[1])
        # Stages are combined on the flattened state: one small matmul per stage instead of
        # a sum per leaf and coefficient (this halved the compile time).
        y0f, unravel = ravel_pytree(y0)

        def flat(tree):
            return ravel_pytree(tree)[0]

        def combine(coeffs, ks):
            return jnp.asarray(coeffs, y0f.dtype) @ jnp.stack(ks)

        kE = [flat(explicit.vf_prod(t0, y0, args, control))]
        kI = [flat(implicit.vf_prod(t0, y0, args, implicit.contr(t0, t1)))]
        for i, (aE, aI) in enumerate(
            zip(explicit_tab.a_lower, implicit_tab.a_lower, strict=True), start=1
        ):
            ti = t0 + float(explicit_tab.c[i - 1]) * h
            R = y0f + combine(aE, kE) + combine(aI, kI)
            U = flat(self.stage_solve(ti, unravel(R), gamma * h, args))
            kI.append((U - R) / gamma)
            kE.append(flat(explicit.vf_prod(ti, unravel(U), args, control)))
        kE, kI = jnp.stack(kE), jnp.stack(kI)
        k = kE + kI
        y1 = unravel(y0f + jnp.asarray(explicit_tab.b_sol, y0f.dtype) @ k)
        y_error = unravel(jnp.asarray(explicit_tab.b_error, y0f.dtype) @ k)
        ks = (jax.vmap(unravel)(kE), jax.vmap(unravel)(kI))
        dense_info = dict(y0=y0, y1=y1, k=ks)
        return y1, y_error, dense_info, None, diffrax.RESULTS.successful

    def _step_partitioned(self, terms, t0, t1, y0, args):
        explicit, implicit = terms.terms
        control_e, control_i = explicit.contr(t0, t1), implicit.contr(t0, t1)
        h = t1 - t0
        explicit_tab, implicit_tab = self.reference.tableau.tableaus
        gamma = float(implicit_tab.a_diagonal[1])
        split, merge = self.partition
        slow0, fast0 = split(y0)
        s0, unravel_slow = ravel_pytree(slow0)
        f0, unravel_fast = ravel_pytree(fast0)

        def join(s, f):
            return merge(unravel_slow(s), unravel_fast(f))

        def slow_of(tree):
            return ravel_pytree(split(tree)[0])[0]

        def fast_of(tree):
            return ravel_pytree(split(tree)[1])[0]

        def combine(coeffs, ks):
            return jnp.asarray(coeffs, s0.dtype) @ jnp.stack(ks)

        kE = [slow_of(explicit.vf_prod(t0, y0, args, control_e))]
        kI = [fast_of(implicit.vf_prod(t0, y0, args, control_i))]
        for i, (aE, aI) in enumerate(
            zip(explicit_tab.a_lower, implicit_tab.a_lower, strict=True), start=1
        ):
            ti = t0 + float(explicit_tab.c[i - 1]) * h
            Rs, Rf = s0 + combine(aE, kE), f0 + combine(aI, kI)
            Uf = fast_of(self.stage_solve(ti, join(Rs, Rf), gamma * h, args))
            kI.append((Uf - Rf) / gamma)
            kE.append(slow_of(explicit.vf_prod(ti, join(Rs, Uf), args, control_e)))
        b_sol, b_error = explicit_tab.b_sol, explicit_tab.b_error
        y1 = join(s0 + combine(b_sol, kE), f0 + combine(b_sol, kI))
        y_error = join(combine(b_error, kE), combine(b_error, kI))
        # dense output: the interpolation adds the two stacks, so one carries the sum
        k = jax.vmap(join)(jnp.stack(kE), jnp.stack(kI))
        ks = (k, jax.tree.map(jnp.zeros_like, k))
        dense_info = dict(y0=y0, y1=y1, k=ks)
        return y1, y_error, dense_info, None, diffrax.RESULTS.successful


class StageSolveKenCarp3(AbstractStageSolveARK):
    """`diffrax.KenCarp3` (order 3, 4 stages) with exact implicit stages."""

    reference: ClassVar[type] = diffrax.KenCarp3
    interpolation_cls: ClassVar = diffrax.KenCarp3.interpolation_cls


class StageSolveKenCarp4(AbstractStageSolveARK):
    """`diffrax.KenCarp4` (order 4, 6 stages) with exact implicit stages."""

    reference: ClassVar[type] = diffrax.KenCarp4
    interpolation_cls: ClassVar = diffrax.KenCarp4.interpolation_cls


class StageSolveKenCarp5(AbstractStageSolveARK):
    """`diffrax.KenCarp5` (order 5, 8 stages) with exact implicit stages."""

    reference: ClassVar[type] = diffrax.KenCarp5
    interpolation_cls: ClassVar = diffrax.KenCarp5.interpolation_cls


def _check_tableaux():
    # each implicit tableau shares b, c with its explicit one (they are ARK pairs), and the
    # implicit one is an ESDIRK with a constant diagonal
    for cls in (diffrax.KenCarp3, diffrax.KenCarp4, diffrax.KenCarp5):
        ex, im = cls.tableau.tableaus
        assert (ex.b_sol == im.b_sol).all() and (ex.b_error == im.b_error).all()
        assert (ex.c == im.c).all()
        assert im.a_diagonal[0] == 0 and (im.a_diagonal[1:] == im.a_diagonal[1]).all()


_check_tableaux()
del _check_tableaux
