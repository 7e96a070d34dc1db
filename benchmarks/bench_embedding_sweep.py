"""Embedding-model frustration sweep: collapse_jax's exact path vs scipy ``solve_ivp``.

Problem: K=5, n=40, d=8, 64 frustration ratios in [0, 0.5] x 4 seeds, MinL2 at 100
log-spaced times in [1e-2, 1e3]. collapse_jax runs the whole sweep in one ``jit(vmap)`` call
on the exact sector path; scipy integrates the full linear ODE member by member with RK45,
LSODA and BDF given the exact sparse Jacobian (what a researcher would otherwise write). scipy
is timed on a subset of members (``--scipy-members``, spread over the ratios) and compared per
member. Agreement is measured against the exact curves wherever MinL2 is above 1e-6 of its
start. Compile time is reported apart from run time.

    .venv/bin/python benchmarks/bench_embedding_sweep.py [--scipy-members 4] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
import scipy.sparse as sp
from scipy.integrate import solve_ivp

jax.config.update("jax_enable_x64", True)

from _record import save_record  # noqa: E402

import collapse_jax as cj  # noqa: E402
from collapse_jax._models.embedding import embedding_sweep  # noqa: E402

K, N_PER, D = 5, 40, 8
PHIS = np.linspace(0.0, 0.5, 64)
SEEDS = 4


def scipy_member(phi, seed, ts, method, rtol, atol):
    """MinL2(ts) of one member with scipy, hand-written numpy field and sparse Jacobian."""
    M = int(round(phi * K * N_PER / (1 - phi)))
    data = cj.standard_data(K, N_PER, M)
    A = np.asarray(data.matrix())
    z0 = cj.init_embedding_state(jax.random.PRNGKey(seed), data.n_samples, K, D)
    x0, y0 = np.asarray(z0.x), np.asarray(z0.y)
    Nn = A.shape[0]
    r, s = A.sum(1), A.sum(0)
    As = sp.csr_matrix(A)

    def f(t, v):
        x = v[: Nn * D].reshape(Nn, D)
        y = v[Nn * D :].reshape(K, D)
        dx = -(r[:, None] * x - As @ y)
        dy = -(s[:, None] * y - As.T @ x)
        return np.concatenate([dx.ravel(), dy.ravel()])

    H = sp.bmat([[sp.diags(r), -As], [-As.T, sp.diags(s)]])
    jac = -sp.kron(H, sp.eye(D), format="csc")
    if method in ("BDF", "Radau"):
        kw = {"jac": jac}
    elif method == "LSODA":  # LSODA takes a dense Jacobian, and only from a callable
        dense = jac.toarray()
        kw = {"jac": lambda t, v: dense}
    else:
        kw = {}
    start = time.perf_counter()
    sol = solve_ivp(
        f,
        (0.0, ts[-1]),
        np.concatenate([x0.ravel(), y0.ravel()]),
        method=method,
        t_eval=ts,
        rtol=rtol,
        atol=atol,
        **kw,
    )
    seconds = time.perf_counter() - start
    ys = sol.y[Nn * D :].T.reshape(len(ts), K, D)
    ml = np.array([float(cj.min_l2(y)) for y in ys])
    exact = np.asarray(cj.exact_min_l2(z0, data, ts))
    ok = exact > 1e-6 * exact[0]
    return seconds, float(np.max(np.abs(ml[ok] / exact[ok] - 1))), sol.status


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scipy-members", type=int, default=4)
    p.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "embedding_sweep.json")
    )
    args = p.parse_args()
    ts = np.asarray(cj.log_times(1e-2, 1e3, 100))

    first = embedding_sweep(
        PHIS, SEEDS, n_classes=K, per_class=N_PER, dim=D, ts=ts, full_metrics=False
    )
    runs = [
        embedding_sweep(
            PHIS, SEEDS, n_classes=K, per_class=N_PER, dim=D, ts=ts, full_metrics=False
        ).metadata["run_seconds"]
        for _ in range(5)
    ]
    members = PHIS.size * SEEDS
    jax_per_member = float(np.median(runs)) / members
    print(
        f"collapse_jax exact sweep: {members} members, compile "
        f"{first.metadata['compile_seconds']:.2f} s, run {np.median(runs) * 1e3:.2f} ms "
        f"(median of 5) = {jax_per_member * 1e6:.1f} us/member"
    )

    picks = np.linspace(1, PHIS.size - 1, args.scipy_members).astype(int)
    records = {}
    for method, rtol, atol in [("BDF", 1e-8, 1e-14), ("LSODA", 1e-8, 1e-14), ("RK45", 1e-8, 1e-14)]:
        times, errs = [], []
        for k, i in enumerate(picks):
            if method == "RK45" and k > 0:
                break  # ~5 s a member: one is enough for the per-member figure
            sec, err, status = scipy_member(PHIS[i], k % SEEDS, ts, method, rtol, atol)
            times.append(sec)
            errs.append(err)
        per = float(np.mean(times))
        records[method] = {
            "rtol": rtol,
            "atol": atol,
            "seconds_per_member": per,
            "members_timed": len(times),
            "max_rel_error_min_l2": max(errs),
            "ratio_vs_collapse_jax": per / jax_per_member,
        }
        print(
            f"scipy {method:5s}: {per:.3f} s/member ({len(times)} timed), MinL2 max rel error "
            f"{max(errs):.1e}; collapse_jax is {per / jax_per_member:,.0f}x faster per member"
        )
    best = min(records, key=lambda m: records[m]["seconds_per_member"])
    out = {
        "problem": {
            "K": K,
            "n": N_PER,
            "d": D,
            "frustration": [0.0, 0.5, 64],
            "seeds": SEEDS,
            "times": [1e-2, 1e3, 100],
        },
        "collapse_jax": {
            "compile_seconds": first.metadata["compile_seconds"],
            "run_seconds_median": float(np.median(runs)),
            "seconds_per_member": jax_per_member,
        },
        "scipy": records,
        "best_scipy": best,
        "speedup_vs_best_scipy": records[best]["seconds_per_member"] / jax_per_member,
    }
    save_record(out, args.out)
    print(f"best scipy method: {best}; speedup {out['speedup_vs_best_scipy']:,.0f}x -> {args.out}")


if __name__ == "__main__":
    main()
