"""Stop-gradient projection model: the N-independent reduced path vs scipy on the full model.

Problem of MODEL.md §6 / issue 4: K=5, n=40, M in 0..10, d=8, t1=200, rtol=1e-6. collapse_jax
integrates the exact order-parameter reduction (``collapse_jax.reduced``) for 16 members in one
``jit(vmap)`` call; scipy ``solve_ivp`` (RK45) integrates the full model (N x d samples) member
by member with a hand-written numpy field, as a researcher would. Also: cost of one reduced
solve to t=20 against n (10 .. 1e6), explicit (Tsit5) and implicit (Kvaerno5). Compile time is
reported apart; OpenBLAS runs single-threaded (see collapse_jax/__init__.py).

    .venv/bin/python benchmarks/bench_projection_reduced.py [--scipy-members 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as collapse_jax does, before numpy loads

import diffrax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _record import save_record  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import collapse_jax as cj  # noqa: E402
from collapse_jax.reduced import ReducedParams, reduce_state, reduced_field  # noqa: E402

jax.config.update("jax_enable_x64", True)
K, N_PER, D, T1, RTOL = 5, 40, 8, 200.0, 1e-6
MAX_SHARED = 10
MS = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 2, 4, 6, 8, 10], dtype=float)


def start(M, seed, n=N_PER):
    """Default start (MODEL.md §1) with ``M`` active shared rows of ``MAX_SHARED`` (M may be
    traced: the shapes do not depend on it)."""
    mask = (jnp.arange(MAX_SHARED) < M).astype(jnp.float64)
    data = cj.StandardData(K, n, mask, jnp.asarray(1.0))
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(k1, (data.n_samples, D))
    y = 2.0 * jax.random.normal(k2, (K, D))
    W = jnp.eye(D) + 0.1 * jax.random.normal(k3, (D, D))
    return data, x, y, W


def reduced_member(M, seed, n, solver, ts, t1=T1):
    data, x, y, W = start(M, seed, n)
    z0 = reduce_state(x, y, W, K, n, data.shared_mask)
    p = ReducedParams(jnp.asarray(float(n)), jnp.asarray(M), jnp.asarray(1.0))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(reduced_field(stop_gradient=True)),
        solver,
        0.0,
        T1,
        None,
        z0,
        p,
        saveat=diffrax.SaveAt(ts=ts),
        max_steps=1_000_000,
        throw=False,
        stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=RTOL * 1e-3),
    )
    return jax.vmap(cj.min_l2)(sol.ys.y), sol.stats["num_steps"], sol.result._value


def scipy_full(M, seed, ts):
    data, x, y, W = start(M, seed)
    A = np.asarray(data.matrix())
    active = np.concatenate([np.ones(K * N_PER, bool), np.asarray(data.shared_mask) > 0])
    A, x = A[active], np.asarray(x)[active]  # scipy gets the active samples only
    N = A.shape[0]
    r, s = A.sum(1), A.sum(0)
    shapes = [(N, D), (K, D), (D, D)]
    sizes = [a * b for a, b in shapes]

    def f(t, v):
        X = v[: sizes[0]].reshape(N, D)
        Y = v[sizes[0] : sizes[0] + sizes[1]].reshape(K, D)
        Wm = v[sizes[0] + sizes[1] :].reshape(D, D)
        R = r[:, None] * (X @ Wm.T) - A @ Y  # predictor residual, y held
        gx = R @ Wm
        gW = R.T @ X
        gy = s[:, None] * Y - A.T @ X  # direct term, x held
        return -np.concatenate([gx.ravel(), gy.ravel(), gW.ravel()])

    v0 = np.concatenate([np.asarray(a).ravel() for a in (x, y, W)])
    t0 = time.perf_counter()
    sol = solve_ivp(f, (0.0, T1), v0, method="RK45", t_eval=ts, rtol=RTOL, atol=RTOL * 1e-3)
    sec = time.perf_counter() - t0
    ys = sol.y[sizes[0] : sizes[0] + sizes[1]].T.reshape(len(ts), K, D)
    return sec, np.array([float(cj.min_l2(jnp.asarray(v))) for v in ys]), sol.nfev


def timed(fn, *args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    c = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, c, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scipy-members", type=int, default=2)
    ap.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "results", "projection_reduced.json"),
    )
    args = ap.parse_args()
    ts = jnp.array([1.0, 10.0, 50.0, 200.0])
    seeds = jnp.arange(len(MS))
    record = {}
    # Kvaerno5 under vmap did not finish in 12 minutes here (single member: 3888 steps, 16 s)
    for name, solver in [("Tsit5", diffrax.Tsit5())]:
        fn = jax.vmap(lambda M, s, solver=solver: reduced_member(M, s, N_PER, solver, ts))
        (ml, steps, res), comp, run = timed(fn, jnp.asarray(MS), seeds)
        record[name] = {
            "compile_seconds": comp,
            "run_seconds": run,
            "seconds_per_member": run / len(MS),
            "steps_max": int(np.max(steps)),
            "failed": int(np.sum(res != 0)),
        }
        print(
            f"reduced {name:8s} jit(vmap) 16 members: compile {comp:.1f} s, run {run:.2f} s "
            f"= {run / len(MS):.3f} s/member, max steps {int(np.max(steps))}",
            flush=True,
        )
        record[name]["min_l2"] = np.asarray(ml).tolist()
    scipy_times, diffs = [], []
    for k in range(args.scipy_members):
        i = [3, 10][k % 2]
        sec, ml_full, nfev = scipy_full(MS[i], i, np.asarray(ts))
        scipy_times.append(sec)
        red = np.asarray(record["Tsit5"]["min_l2"][i])
        diffs.append(float(np.max(np.abs(red / ml_full - 1))))
        print(
            f"scipy RK45 full model, M={MS[i]:.0f}: {sec:.2f} s ({nfev} evaluations); reduced "
            f"vs full MinL2 max rel diff {diffs[-1]:.1e}",
            flush=True,
        )
    scipy_per = float(np.mean(scipy_times))
    best = min(record, key=lambda m: record[m]["seconds_per_member"])
    speedup = scipy_per / record[best]["seconds_per_member"]
    print(f"speedup per member, reduced {best} vs scipy RK45 full: {speedup:.1f}x")
    scaling = []
    ts_short = jnp.array([1.0, 20.0])
    for n in (10, 1000, 100_000, 1_000_000):
        row = {"n": n}
        for name, solver in [("Tsit5", diffrax.Tsit5()), ("Kvaerno5", diffrax.Kvaerno5())]:
            if name == "Tsit5" and n > 1000:
                row[name] = None  # explicit steps grow with n (stiffness): ~n * t1
                continue
            fn = lambda M, s, n=n, solver=solver: reduced_member(  # noqa: E731
                M, s, n, solver, ts_short, 20.0
            )
            (ml, steps, res), comp, run = timed(fn, jnp.asarray(3.0), jnp.asarray(0))
            row[name] = {"run_seconds": run, "steps": int(steps), "result": int(res)}
        scaling.append(row)
        print(
            f"n={n:>8d}: "
            + ", ".join(
                f"{k} {v['run_seconds']:.2f} s / {v['steps']} steps" if v else f"{k} skipped"
                for k, v in row.items()
                if k != "n"
            ),
            flush=True,
        )
    out = {
        "problem": {"K": K, "n": N_PER, "d": D, "t1": T1, "rtol": RTOL, "M": MS.tolist()},
        "reduced": record,
        "scipy_rk45_full_seconds_per_member": scipy_per,
        "reduced_vs_full_max_rel_diff": max(diffs) if diffs else None,
        "speedup_per_member": speedup,
        "best_reduced_solver": best,
        "n_scaling": scaling,
    }
    save_record(out, args.out)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
