"""Profile of one IMEX step of the projection model's reduced path, and what each change bought.

The benchmark problem of ``bench_projection_reduced.py`` (K=5, n=40, d=8, 16 members with M in
0..10, stop-gradient field). One step of ``StageSolveKenCarp4`` under ``jit(vmap)`` of 16 is
made of ~250 small XLA operations (8 x 8 matrix products, LAPACK calls, elementwise fusions);
on a CPU each costs about a microsecond whatever its size, so the step's time follows the
number of operations and the arithmetic of the batched small products, not the model's size.
This script measures, for the formulation before and after each change (applied in turn):

1. ``previous``: the moment loss with `n tr(W C W^T) + K M tr(W C_S W^T)` (four products),
   a Cholesky stage solve (three LAPACK calls per stage and member), whole-state stage
   combinations (the general ARK step);
2. ``+ loss``: the same loss written `<W^T W, n C + K M C_S>` (one product);
3. ``+ solve``: the stage solve by unrolled Gauss--Jordan elimination (elementwise, batched);
4. ``+ partition``: the partitioned step (explicit stages combined on the slow leaves only,
   implicit ones on `(y, W)` only): the package's path now.

For each: microseconds per batched step (median and minimum of interleaved repeats of a
``fori_loop`` of steps, compile time apart), HLO operation counts of one step (fusions,
matrix products, custom calls), XLA's flop count per member-step, and the whole 16-member solve
at rtol 2.5e-8 (the tolerance that matches scipy RK45's accuracy on this problem), seconds per
member and steps. Results agree between configurations to rounding (checked here: MinL2 at
the save times). ``--quick`` uses fewer repeats.

    .venv/bin/python benchmarks/bench_projection_profile.py [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import time

import diffrax
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np

jax.config.update("jax_enable_x64", True)

from _record import save_record  # noqa: E402
from bench_projection_reduced import MS, batch_fn, start  # noqa: E402

import collapse_jax as cj  # noqa: E402
from collapse_jax import _reduced  # noqa: E402
from collapse_jax._imex import StageSolveKenCarp4  # noqa: E402
from collapse_jax._reduced import reduce_state, reduced_field, reduced_params  # noqa: E402

K, N_PER = 5, 40
RTOL_MATCH = 2.5e-8


def previous_moment_loss(z, h, p):
    """The moment loss as written before (four d x d products in the trace terms)."""
    K = z.y.shape[0]
    n, M = p.n, p.w * p.m
    Wx = z.xbar @ z.W.T
    Wxs = z.W @ z.xs
    pred = n * jnp.sum((Wx - h.y) ** 2) + M * jnp.sum((Wxs[None, :] - h.y) ** 2)
    pred = pred + n * jnp.trace(z.W @ z.C @ z.W.T) + K * M * jnp.trace(z.W @ z.CS @ z.W.T)
    direct = n * jnp.sum((z.y - h.xbar) ** 2) + M * jnp.sum((z.y - h.xs[None, :]) ** 2)
    direct = direct + n * jnp.trace(h.C) + K * M * jnp.trace(h.CS)
    return 0.5 * (pred + direct)


def cholesky_solve(P, B):
    return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(P), B)


@contextlib.contextmanager
def formulation(loss, solve):
    """Trace with another moment loss / SPD solve in the package's reduced field."""
    saved = _reduced.moment_loss, _reduced._spd_solve
    _reduced.moment_loss, _reduced._spd_solve = loss, solve
    try:
        yield
    finally:
        _reduced.moment_loss, _reduced._spd_solve = saved


CONFIGS = {
    "previous": (previous_moment_loss, cholesky_solve, False),
    "+ loss": (_reduced.moment_loss, cholesky_solve, False),
    "+ solve": (_reduced.moment_loss, _reduced._spd_solve, False),
    "+ partition": (_reduced.moment_loss, _reduced._spd_solve, True),
}


def op_counts(compiled):
    """Operations in the optimised HLO of the step (the loop body of one step)."""
    txt = compiled.as_text()
    counts = collections.Counter()
    entry = txt[txt.index("ENTRY") :]
    for line in entry.splitlines():
        m = re.match(r"\s*(?:ROOT )?\S+ = \S+ (\w[\w-]*)\(", line)
        if m and m.group(1) not in ("parameter", "constant", "get-tuple-element", "bitcast"):
            counts["custom-call" if m.group(1) == "custom-call" else m.group(1)] += 1
    return dict(counts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "results", "projection_profile.json"),
    )
    args = ap.parse_args()
    repeats, loop = (3, 100) if args.quick else (9, 300)
    Ms, seeds = jnp.asarray(MS), jnp.arange(len(MS))
    members = len(MS)
    ts = cj.log_times(1.0, 200.0, 20)

    @jax.jit
    @jax.vmap
    def starts(M, seed):
        data, s0 = start(M, seed)
        z = reduce_state(s0.x, s0.y, s0.W, K, N_PER, data.shared_mask)
        return z, reduced_params(data)

    z, p = starts(Ms, seeds)
    field = reduced_field(stop_gradient=True)
    terms = diffrax.MultiTerm(diffrax.ODETerm(field.explicit), diffrax.ODETerm(field.implicit))
    steps_fns, solves, rows = {}, {}, {}
    for name, (loss, solve, partitioned) in CONFIGS.items():
        part = (field.split, field.merge) if partitioned else None
        solver = StageSolveKenCarp4(field.stage_solve, part)

        def step(zz, pp, solver=solver):
            return solver.step(terms, 0.0, 0.01, zz, pp, None, False)[0]

        jax.clear_caches()  # diffeqsolve's own jit would reuse the first formulation's trace
        with formulation(loss, solve):
            one = jax.jit(jax.vmap(step)).lower(z, p).compile()
            flops = one.cost_analysis()
            flops = flops[0] if isinstance(flops, list) else flops
            batched = jax.vmap(step)
            looped = jax.jit(
                lambda c, s=batched: jax.lax.fori_loop(0, loop, lambda i, c: s(c, p), c)
            )
            t0 = time.perf_counter()
            looped = looped.lower(z).compile()
            compile_s = time.perf_counter() - t0
            with contextlib.nullcontext() if partitioned else general_step():
                fn = batch_fn("KenCarp4", True, ts)
                solve_c = fn.lower(Ms, seeds, RTOL_MATCH, RTOL_MATCH * 1e-3).compile()
        steps_fns[name] = looped
        solves[name] = solve_c
        rows[name] = {
            "ops": op_counts(one),
            "flops_per_member_step": float(flops.get("flops", 0.0)) / members,
            "loop_compile_seconds": compile_s,
        }
        print(f"{name:12s} ops {rows[name]['ops']}", flush=True)
    # interleaved timings: every configuration sees the same machine state
    step_t = {k: [] for k in CONFIGS}
    solve_t = {k: [] for k in CONFIGS}
    outs = {}
    for k in CONFIGS:
        jax.block_until_ready(steps_fns[k](z))
        outs[k] = jax.block_until_ready(solves[k](Ms, seeds, RTOL_MATCH, RTOL_MATCH * 1e-3))
    for _ in range(repeats):
        for k in CONFIGS:
            t0 = time.perf_counter()
            jax.block_until_ready(steps_fns[k](z))
            step_t[k].append((time.perf_counter() - t0) / loop * 1e6)
    for _ in range(max(1, repeats // 3)):
        for k in CONFIGS:
            t0 = time.perf_counter()
            jax.block_until_ready(solves[k](Ms, seeds, RTOL_MATCH, RTOL_MATCH * 1e-3))
            solve_t[k].append(time.perf_counter() - t0)
    base = np.asarray(outs["previous"][0])
    prev = None
    for k in CONFIGS:
        ml, steps, res = (np.asarray(a) for a in outs[k])
        med = float(np.median(step_t[k]))
        rows[k].update(
            {
                "us_per_batched_step_median": med,
                "us_per_batched_step_min": float(np.min(step_t[k])),
                "solve_seconds_per_member": float(np.min(solve_t[k])) / members,
                "solve_steps_max": int(steps.max()),
                "solve_failed": int(np.sum(res != 0)),
                "max_rel_diff_min_l2_vs_previous": float(np.max(np.abs(ml / base - 1.0))),
                "step_speedup_vs_previous_change": None if prev is None else prev / med,
            }
        )
        prev = med
        r = rows[k]
        print(
            f"{k:12s} {med:6.0f} us/step (min {r['us_per_batched_step_min']:.0f}), "
            f"{sum(r['ops'].values())} ops, {r['flops_per_member_step']:.0f} flops/member-step; "
            f"solve rtol {RTOL_MATCH:g}: {r['solve_seconds_per_member']:.4f} s/member, "
            f"{r['solve_steps_max']} steps, "
            f"MinL2 vs previous {r['max_rel_diff_min_l2_vs_previous']:.1e}",
            flush=True,
        )
    first, last = rows["previous"], rows["+ partition"]
    out = {
        "problem": {"K": K, "n": N_PER, "d": 8, "members": members, "M": MS.tolist()},
        "loop_steps": loop,
        "repeats": repeats,
        "rtol_solve": RTOL_MATCH,
        "configs": rows,
        "step_speedup_total": first["us_per_batched_step_median"]
        / last["us_per_batched_step_median"],
        "solve_speedup_total": first["solve_seconds_per_member"] / last["solve_seconds_per_member"],
    }
    save_record(out, args.out)
    print(
        f"step {out['step_speedup_total']:.2f}x faster, whole solve "
        f"{out['solve_speedup_total']:.2f}x -> {args.out}"
    )


@contextlib.contextmanager
def general_step():
    """``batch_fn`` traced with the general (unpartitioned) step of the same solver."""
    import bench_projection_reduced as bench

    saved = bench.make_solver
    bench.make_solver = lambda name, field: StageSolveKenCarp4(field.stage_solve)
    try:
        yield
    finally:
        bench.make_solver = saved


if __name__ == "__main__":
    main()
