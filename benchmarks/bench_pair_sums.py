"""Expanded pair sums vs the materialised N x K x d pair tensor: cost of one jax.grad.

docs/theory.md §6: "Never materialise the N x K x d pair tensor": every pair sum expands as
`sum_ic A_ic |a_i - b_c|^2 = sum_i r_i |a_i|^2 - 2 sum_i a_i.(A b)_i + sum_c s_c |b_c|^2`, and
``jax.grad`` of that form costs `O(N d (d + K))`. This script times the jit'd ``jax.grad`` of
the package's losses (:func:`collapse_jax._losses.embedding_loss`,
:func:`collapse_jax._losses.projection_loss`, both built on the expanded
:func:`collapse_jax._losses.pair_sum`) against the same losses written here with the pair
tensor (as ``tests/test_reduced.py::full_loss``), on the standard data set (K=5, n = N/K clean
samples per class, 10 shared), N from 1e2 to 1e5, d = 8 and 64. Gradients: the conservative
one (both slots), and for the projection loss also the stop-gradient field's (held slot
frozen, docs/theory.md §3). Both forms are first checked to give the same gradient (1e-10 relative);
the script stops if they do not. Seconds per gradient evaluation are the median over repeated
calls after compile (compile time reported apart); float64 on the CPU, OpenBLAS
single-threaded.

    .venv/bin/python benchmarks/bench_pair_sums.py [--quick] [--min-time 0.5] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from _record import save_record  # noqa: E402

import collapse_jax as cj  # noqa: E402
from collapse_jax._losses import embedding_loss, projection_loss  # noqa: E402

K, SHARED = 5, 10
GRAD_RTOL = 1e-10


def materialised_embedding_loss(z, h, A):
    """`L_E` with the N x K x d pair tensor (the form docs/theory.md §6 warns against)."""
    del h
    return 0.5 * jnp.sum(A[:, :, None] * (z.x[:, None, :] - z.y[None]) ** 2)


def materialised_projection_loss(z, h, A):
    """`L_P` with the N x K x d pair tensor, held slot as in the package's loss."""
    pred = jnp.sum(A[:, :, None] * ((z.x @ z.W.T)[:, None, :] - h.y[None]) ** 2)
    direct = jnp.sum(A[:, :, None] * (z.y[None] - h.x[:, None, :]) ** 2)
    return 0.5 * (pred + direct)


CASES = {
    # name: (package loss, materialised loss, has W, stop-gradient)
    "embedding": (embedding_loss, materialised_embedding_loss, False, False),
    "projection": (projection_loss, materialised_projection_loss, True, False),
    "projection_sg": (projection_loss, materialised_projection_loss, True, True),
}


def gradient(loss, stop_gradient):
    """``jit(grad)`` of ``z -> loss(z, z, A)``, or of the first slot only (stop-gradient)."""
    if stop_gradient:
        return jax.jit(jax.grad(loss, argnums=0))  # called as (z, z, A): held slot frozen
    return jax.jit(jax.grad(lambda z, h, A: loss(z, z, A)))


def problem(N, d, with_W, seed=0):
    """Standard data with about ``N`` samples (n = N // K per class, 10 shared) and a state."""
    n = max(N // K, 1)
    data = cj.standard_data(K, n, SHARED)
    A = data.matrix()
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(k1, (data.n_samples, d))
    y = 2.0 * jax.random.normal(k2, (K, d))
    if with_W:
        W = jnp.eye(d) + 0.1 * jax.random.normal(k3, (d, d))
        return cj.ProjectionState(x, y, W), A
    return cj.EmbeddingState(x, y), A


def compile_fn(fn, *args):
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def per_call(compiled, args, min_time):
    """Median seconds per call over batches of calls lasting at least ``min_time`` in all."""
    jax.block_until_ready(compiled(*args))  # warm-up
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    one = time.perf_counter() - t0
    calls = max(1, int(0.1 * min_time / max(one, 1e-9)))  # calls per batch
    samples, total = [], 0.0
    while total < min_time or len(samples) < 5:
        t0 = time.perf_counter()
        for _ in range(calls):
            out = compiled(*args)
        jax.block_until_ready(out)
        dt = time.perf_counter() - t0
        samples.append(dt / calls)
        total += dt
    return float(np.median(samples))


def rel_diff(a, b):
    """Max over leaves of max |a - b| / max |b|."""
    diffs = jax.tree.map(lambda u, v: jnp.max(jnp.abs(u - v)) / jnp.max(jnp.abs(v)), a, b)
    return float(max(jax.tree.leaves(diffs)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: N <= 1e4, short timings")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per timing (0.5)")
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "pair_sums.json")
    )
    args = ap.parse_args()
    quick = args.quick
    min_time = args.min_time or (0.1 if quick else 0.5)
    Ns = (100, 1_000, 10_000) if quick else (100, 1_000, 10_000, 100_000)
    dims = (8, 64)
    rows = []
    for case, (loss, mat_loss, with_W, sg) in CASES.items():
        fast, slow = gradient(loss, sg), gradient(mat_loss, sg)
        for d in dims:
            for N in Ns:
                z, A = problem(N, d, with_W)
                gargs = (z, z, A)
                cf, comp_f = compile_fn(fast, *gargs)
                cs, comp_s = compile_fn(slow, *gargs)
                diff = rel_diff(cf(*gargs), cs(*gargs))
                if not diff <= GRAD_RTOL:
                    raise SystemExit(
                        f"{case} N={N} d={d}: expanded and materialised gradients differ by "
                        f"{diff:.1e} relative (> {GRAD_RTOL:g}); no timing"
                    )
                t_f = per_call(cf, gargs, min_time)
                t_s = per_call(cs, gargs, min_time)
                rows.append(
                    {
                        "loss": case,
                        "N": int(A.shape[0]),
                        "d": d,
                        "grad_rel_diff": diff,
                        "expanded": {"compile_seconds": comp_f, "seconds_per_grad": t_f},
                        "materialised": {"compile_seconds": comp_s, "seconds_per_grad": t_s},
                        "ratio": t_s / t_f,
                    }
                )
                print(
                    f"{case:13s} d={d:2d} N={A.shape[0]:>6d}: expanded {t_f * 1e6:9.1f} us, "
                    f"materialised {t_s * 1e6:9.1f} us, ratio {t_s / t_f:5.2f}x "
                    f"(grad rel diff {diff:.0e}; compile {comp_f:.2f} / {comp_s:.2f} s)",
                    flush=True,
                )
    out = {
        "problem": {
            "K": K,
            "shared": SHARED,
            "N": list(Ns),
            "d": list(dims),
            "dtype": "float64",
            "grad_rtol": GRAD_RTOL,
        },
        "quick": quick,
        "min_time": min_time,
        "rows": rows,
    }
    save_record(out, args.out)
    big = [r for r in rows if r["N"] == max(r["N"] for r in rows)]
    summary = ", ".join(f"{r['loss']} d={r['d']} {r['ratio']:.1f}x" for r in big)
    print(f"materialised / expanded time per gradient at N={big[0]['N']}: {summary} -> {args.out}")


if __name__ == "__main__":
    main()
