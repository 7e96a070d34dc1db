"""Integrating a derived vector field with diffrax.

The gradient flows here have a fast and a slow time scale (docs/theory.md §2, §6: the fast rate
grows with the number of samples), so they are stiff at long horizons. The default solver is
therefore the implicit ``diffrax.Kvaerno5`` with a PID controller; pass ``solver=diffrax.Tsit5()``
for short horizons or small systems. Every diffrax object passes straight through.
"""

from __future__ import annotations

import functools
import math
import typing

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from ._fields import VectorField, training_loss

__all__ = [
    "result_name",
    "log_times",
    "simulate",
    "default_solver",
    "train",
    "DEFAULT_RTOL",
    "DEFAULT_ATOL",
]

#: Default tolerances. Errors are controlled relative to the O(1) label positions, while
#: MinL2 is a small difference of them: to resolve MinL2 to 1e-7 relative down to 1e-6 of its
#: start, use ``rtol=1e-13, atol=1e-15`` (measured; see tests/test_integrate.py).
DEFAULT_RTOL = 1e-12
DEFAULT_ATOL = 1e-14


def default_solver(rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> diffrax.Kvaerno5:
    """Implicit ``Kvaerno5`` whose Newton (chord) iteration stops at ``(100 rtol, 10 atol)``.

    The chord iteration is exact after one step on a linear field; asking it for the step-size
    controller's own tolerance near float64 round-off only causes rejected steps.
    """
    return diffrax.Kvaerno5(root_finder=diffrax.VeryChord(rtol=100 * rtol, atol=10 * atol))


def result_name(result) -> str:
    """The name of a (scalar) diffrax result code, e.g. ``"successful"``."""
    value = int(np.asarray(result._value))
    for name, item in diffrax.RESULTS._name_to_item.items():
        if int(item._value) == value:
            return name
    return str(value)


def log_times(t_min: float, t_max: float, count: int) -> jnp.ndarray:
    """`count` log-spaced times in `[t_min, t_max]`, clipped so they never leave the interval.

    (`logspace` can end a hair above `t_max` in floating point and diffrax rejects that,
    docs/theory.md §6.)
    """
    t_min, t_max = float(t_min), float(t_max)
    if not (math.isfinite(t_min) and t_min > 0):
        raise ValueError(f"t_min must be a positive number, got {t_min}")
    if not (math.isfinite(t_max) and t_max >= t_min):
        raise ValueError(f"t_max must be a number >= t_min={t_min}, got {t_max}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    ts = jnp.logspace(math.log10(t_min), math.log10(t_max), int(count))
    return jnp.clip(ts, t_min, t_max)


def simulate(
    field: VectorField,
    state0,
    args,
    *,
    ts=None,
    t0: float = 0.0,
    t1: float | None = None,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    saveat: diffrax.SaveAt | None = None,
    dt0: float | None = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    max_steps: int = 200_000,
    throw: bool = False,
    progress_meter: diffrax.AbstractProgressMeter | None = None,
    event: diffrax.Event | None = None,
) -> diffrax.Solution:
    """Integrate `dz/dt = field(t, z, args)` from ``state0`` at ``t0``.

    Args:
        field: a [`VectorField`][collapse_jax.VectorField] (any diffrax-shaped callable
            works), or a diffrax term (e.g. the ``MultiTerm`` of an IMEX split) passed as it is.
        state0: initial state pytree.
        args: passed to the field (the alignment matrix for the minimal models).
        ts: save times; default 100 log-spaced times in `[1e-2, t1]` (`t1` default 1e3).
        t1: end time; default ``ts[-1]``.
        solver: default [`default_solver`][collapse_jax.default_solver] (implicit
            Kvaerno5: the problem is stiff).
        stepsize_controller: default ``PIDController(rtol, atol)``.
        saveat: default ``SaveAt(ts=ts)``.
        dt0: initial step; default chosen by the controller.
        throw: default False: a failed solve is reported through ``Solution.result`` (check
            ``sol.result == diffrax.RESULTS.successful``) instead of raising, so one failing
            member of a ``vmap`` sweep does not sink its batch.
        progress_meter: e.g. ``diffrax.TqdmProgressMeter()`` (stderr).
        event: a ``diffrax.Event``, e.g. ``Event(steady_state_event())`` to stop at a steady
            state (see [`find_steady_state`][collapse_jax.find_steady_state]).

    Returns:
        The ``diffrax.Solution`` (``ts``, ``ys``, ``result``, ``stats``).

    Raises:
        ValueError: a state whose fields disagree on a size their annotations share (e.g.
            ``y`` of another dimension than ``x``: it would broadcast silently), a negative or
            non-finite ``rtol``/``atol`` (or ``rtol >= 1``), and a step-size tolerance below
            the machine epsilon of the state's dtype (float32 with the default ``rtol``: the
            controller could never meet it and the solve would run to ``max_steps``).
    """
    _check_state(state0)
    _check_tolerances(rtol, atol)
    if stepsize_controller is None:
        _check_precision(state0, rtol, atol)
    elif isinstance(stepsize_controller, diffrax.PIDController):
        _check_precision(state0, stepsize_controller.rtol, stepsize_controller.atol)
    if ts is None:
        ts = log_times(1e-2, 1e3 if t1 is None else t1, 100)
    ts = jnp.asarray(ts)
    if t1 is None:
        t1 = ts[-1]
    solver = default_solver(rtol, atol) if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol)
    saveat = diffrax.SaveAt(ts=ts) if saveat is None else saveat
    term = field if isinstance(field, diffrax.AbstractTerm) else diffrax.ODETerm(field)
    return diffrax.diffeqsolve(
        term,
        solver,
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=state0,
        args=args,
        saveat=saveat,
        stepsize_controller=stepsize_controller,
        max_steps=max_steps,
        throw=throw,
        progress_meter=diffrax.NoProgressMeter() if progress_meter is None else progress_meter,
        event=event,
    )


def _concrete(value):
    """``value`` as a Python float, or ``None`` when it is not a concrete number (traced)."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except Exception:  # a tracer, an array of several values: left to diffrax
        return None


def _check_tolerances(rtol, atol) -> None:
    r, a = _concrete(rtol), _concrete(atol)
    for name, v, given in (("rtol", r, rtol), ("atol", a, atol)):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise ValueError(f"simulate: {name} must be a finite number >= 0, got {given!r}")
    if r is not None and r >= 1:
        raise ValueError(
            f"simulate: rtol must be < 1 (it is a relative error), got {rtol!r}; e.g. 1e-8"
        )
    if r == 0 and a == 0:
        raise ValueError("simulate: rtol and atol are both 0: give one of them a positive value")


def _check_precision(state0, rtol, atol) -> None:
    r, a = _concrete(rtol), _concrete(atol)
    dtypes = [
        jnp.result_type(leaf)
        for leaf in jax.tree.leaves(state0)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
    ]
    if r is None or a is None or not dtypes:
        return
    dtype = max(dtypes, key=lambda d: float(jnp.finfo(d).eps))  # the least precise
    eps = float(jnp.finfo(dtype).eps)
    if r < eps and (r > 0 or a < eps):
        raise ValueError(
            f"simulate: rtol={rtol!r} is below the machine epsilon {eps:.3g} of the {dtype} "
            "state, so the solve could only run to max_steps: enable float64 "
            "(jax.config.update('jax_enable_x64', True) before creating arrays) or raise rtol "
            f"to {max(1e-6, 10 * eps):.0e} or more"
        )


@functools.lru_cache(maxsize=64)
def _annotated_axes(state_type) -> tuple:
    """``((field, axis names), ...)`` of a NamedTuple state whose fields carry jaxtyping
    shapes (e.g. ``Float[Array, "classes dim"]``); fields with other annotations are left out."""
    try:
        hints = typing.get_type_hints(state_type)
    except Exception:
        return ()
    axes = []
    for name in state_type._fields:
        hint = hints.get(name)
        dims = [getattr(h, "dim_str", None) for h in (hint, *typing.get_args(hint))]
        dims = next((d for d in dims if isinstance(d, str)), None)
        tokens = tuple(dims.split()) if dims is not None else ()
        if tokens and all(t.isidentifier() or t.isdigit() for t in tokens):
            axes.append((name, tokens))
    return tuple(axes)


def _check_state(state0) -> None:
    """Every axis name of a state's annotations (``dim``, ``classes``...) one size in every
    field, every fixed size as written: what would otherwise broadcast silently."""
    if not isinstance(state0, tuple) or not hasattr(type(state0), "_fields"):
        return
    seen = {}  # axis name -> (size, field, shape)
    for name, tokens in _annotated_axes(type(state0)):
        value = getattr(state0, name)
        if value is None:
            continue
        shape = tuple(np.shape(value))
        if len(shape) != len(tokens):
            raise ValueError(
                f"simulate: state field {name!r} must have {len(tokens)} axes "
                f"({' '.join(tokens)}), got shape {shape}"
            )
        for token, size in zip(tokens, shape, strict=True):
            if token.isdigit() and int(token) != size:
                raise ValueError(
                    f"simulate: state field {name!r} must have shape ({', '.join(tokens)}), "
                    f"got {shape}"
                )
            if not token.isdigit() and seen.setdefault(token, (size, name, shape))[0] != size:
                first = seen[token]
                raise ValueError(
                    f"simulate: state field {name!r} has shape {shape} ({' '.join(tokens)}), "
                    f"but {token!r} is {first[0]} in field {first[1]!r} of shape {first[2]}: "
                    "give every field the same sizes"
                )


def train(
    loss,
    state0,
    args,
    optimizer,
    *,
    steps: int,
    stop_gradient: bool = False,
    save_every: int = 1,
    sample_args=None,
    key=None,
    post_update=None,
    save_steps=None,
    record=None,
    return_final: bool = False,
):
    """Discrete training with an optax optimiser on the same loss as the flow.

    The gradient is that of [`training_loss`][collapse_jax.training_loss]
    (``lax.stop_gradient`` on the held slot when ``stop_gradient``), so with ``optax.sgd(lr)`` step
    `k` approximates the gradient flow at `t = k lr`. Any ``optax.GradientTransformation`` works
    (momentum, ``optax.adam``, ``optax.chain(optax.add_decayed_weights(wd), ...)`` for weight
    decay). Runs in one ``lax.scan`` (jit it, or vmap it over ``args``).

    Args:
        loss: ``loss(state, held, args) -> scalar``.
        state0: initial state pytree (``None`` leaves are skipped).
        args: passed to the loss.
        optimizer: an ``optax.GradientTransformation``.
        steps: number of updates; must be a multiple of ``save_every``.
        stop_gradient: fill the held slot with ``lax.stop_gradient(state)``.
        save_every: record the state every this many steps.
        sample_args: optional ``key -> args`` drawing fresh loss arguments at every step
            (minibatch noise, e.g. ``lambda k: data.batch_moments(k, 32)``); ``args`` is then
            unused. Step `j` uses ``jax.random.fold_in(key, j)``.
        key: PRNG key for ``sample_args`` (required with it).
        post_update: optional hook ``(state_before, state_after, step_args) -> state`` applied
            after every optimiser update, for state that is not trained: e.g. an EMA target
            relaxed towards the pre-update labels, overwriting whatever the optimiser did to it.
        save_steps: optional increasing step counts to record at instead of every
            ``save_every`` steps (e.g. log-spaced; a host sequence, the first `>= 0`, the last
            ``steps``); the gaps are run as loops of their own length.
        record: optional ``record(state, args) -> pytree`` stored at each saved step instead of
            the state (e.g. metrics of a network, whose parameters would be large to keep).
        return_final: also return the final state (useful with ``record``).

    Returns:
        ``(steps_saved, states)``: the step counts (`0, save_every, ..., steps`, or `0` and
        ``save_steps``) and the states there (or ``record`` of them), stacked on a leading axis.
    """
    import optax

    if save_steps is None and steps % save_every:
        raise ValueError(f"steps={steps} must be a multiple of save_every={save_every}")
    if save_steps is not None:
        save_steps = np.asarray(save_steps, dtype=np.int64)
        if (
            save_steps.ndim != 1
            or save_steps.size == 0
            or save_steps[0] < 0
            or np.any(np.diff(save_steps) <= 0)
            or save_steps[-1] != steps
        ):
            raise ValueError(
                f"save_steps must increase from >= 0 to steps={steps}, got {save_steps!r}"
            )
    value = training_loss(loss, stop_gradient=stop_gradient)
    grad = jax.grad(value)

    if sample_args is not None and key is None:
        raise ValueError("train: sample_args needs a PRNG key (key=...)")

    def one(carry, _):
        state, opt_state, j = carry
        # minibatch noise: fresh arguments per step, else the full-batch ones
        step_args = args if sample_args is None else sample_args(jax.random.fold_in(key, j))
        updates, opt_state = optimizer.update(grad(state, step_args), opt_state, state)
        new = optax.apply_updates(state, updates)
        if post_update is not None:
            new = post_update(state, new, step_args)
        return (new, opt_state, j + 1), None

    def keep(state):
        return state if record is None else record(state, args)

    carry0 = (state0, optimizer.init(state0), jnp.asarray(0, dtype=jnp.int32))
    if save_steps is None:

        def block(carry, _):
            carry, _ = jax.lax.scan(one, carry, None, length=save_every)
            return carry, keep(carry[0])

        last, states = jax.lax.scan(block, carry0, None, length=steps // save_every)
        first, saved = state0, jnp.arange(0, steps + 1, save_every)
    else:

        def gap(carry, length):
            # a loop of this gap's own length (a while loop: the gaps differ)
            carry = jax.lax.fori_loop(0, length, lambda _, c: one(c, None)[0], carry)
            return carry, keep(carry[0])

        start = int(save_steps[0])
        if start:
            carry0 = gap(carry0, start)[0]
        gaps = jnp.asarray(np.diff(save_steps), dtype=jnp.int32)
        last, states = jax.lax.scan(gap, carry0, gaps)
        first, saved = carry0[0], jnp.asarray(save_steps)
    states = jax.tree_util.tree_map(
        lambda a0, a: jnp.concatenate([a0[None], a], axis=0), keep(first), states
    )
    return (saved, states, last[0]) if return_final else (saved, states)
