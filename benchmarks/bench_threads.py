"""BLAS threads and the order of the imports: JAX's float64 LU with and without the limit.

JAX's CPU LU calls the LAPACK that scipy ships (OpenBLAS, ``libscipy_openblas-*.so`` in the
pip wheels; numpy carries a second one, ``libscipy_openblas64_-*.so``). ``import
collapse_jax`` makes both single-threaded whatever was imported first (``collapse_jax._threads``).
Each case runs in a fresh process, one after the other:

* ``numpy_first``: ``import numpy``, then ``collapse_jax``;
* ``scipy_first``: ``import numpy, scipy.linalg`` (both OpenBLAS libraries already loaded, as
  after ``import sklearn``), then ``collapse_jax``;
* ``collapse_jax_first``: ``collapse_jax`` before anything else;
* ``threaded``: ``OPENBLAS_NUM_THREADS`` set to the number of cores before anything is
  imported (``collapse_jax`` then leaves it alone): the path without a limit.

Timed in each, float64 on the CPU, compile time apart (the first call):

* ``lu_ms``: one jit'd ``jax.scipy.linalg.lu_factor`` of a 280 x 280 matrix (median);
* ``solve_loop_ms``: 100 solves of 280 x 280 systems in one jit'd ``fori_loop``, each solution
  normalised before the next (XLA's own work between the LU calls, as in an implicit
  integrator; median), checked against the same iteration in numpy;
* ``implicit_ms``: :func:`collapse_jax.simulate` (implicit ``Kvaerno5``, the default) of the
  embedding model with K = 4, n = 15, M = 5, d = 4 (a 276-dimensional state) to t = 10
  (median; about 730 steps), with its step count.

Every case records ``threadpoolctl.threadpool_info()`` after the runs (the thread count of each
BLAS library, JAX's included) and the load average of the machine (the machine may be shared).

    .venv/bin/python benchmarks/bench_threads.py [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CASES = ("numpy_first", "scipy_first", "collapse_jax_first", "threaded")
SIZE = 280
LOOP = 100
T1 = 10.0


def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


def _timed(fn, repeats):
    """(first call in s, median of ``repeats`` further calls in ms)."""
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t)
    return first, 1e3 * _median(runs), out


def worker(case: str, repeats: int) -> dict:
    """One case, in this (fresh) process; the imports happen here, in the case's order."""
    if case == "collapse_jax_first":
        import collapse_jax  # noqa: F401
    if case == "scipy_first":
        import numpy  # noqa: F401
        import scipy.linalg  # noqa: F401
    if case == "numpy_first":
        import numpy  # noqa: F401
    import diffrax
    import jax
    import jax.numpy as jnp
    import numpy as np
    import threadpoolctl

    import collapse_jax as cj

    jax.config.update("jax_enable_x64", True)
    before = cj.blas_threads()
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((SIZE, SIZE)) / SIZE**0.5 + np.eye(SIZE))
    b = jnp.asarray(rng.standard_normal(SIZE))

    lu = jax.jit(jax.scipy.linalg.lu_factor)
    lu_first, lu_ms, _ = _timed(lambda: jax.block_until_ready(lu(a)), 10 * repeats)

    @jax.jit
    def solve_loop(a, b):
        eye = jnp.eye(SIZE, dtype=a.dtype)

        def body(i, x):
            y = jnp.linalg.solve(a + 0.01 * i * eye, x)
            return y / jnp.linalg.norm(y)

        return jax.lax.fori_loop(0, LOOP, body, b)

    loop_first, loop_ms, x = _timed(lambda: jax.block_until_ready(solve_loop(a, b)), repeats)
    # the same iteration in numpy: the loop computed what it should
    a_np, x_ref = np.asarray(a), np.asarray(b)
    for i in range(LOOP):
        y = np.linalg.solve(a_np + 0.01 * i * np.eye(SIZE), x_ref)
        x_ref = y / np.linalg.norm(y)
    loop_error = float(np.max(np.abs(np.asarray(x) - x_ref)))

    data = cj.standard_data(4, 15, 5)
    z0 = cj.init_embedding_state(jax.random.PRNGKey(0), data.n_samples, 4, 4)
    field = cj.vector_field(cj.embedding_loss)
    ts = cj.log_times(1e-2, T1, 20)
    run = jax.jit(lambda z: cj.simulate(field, z, data.matrix(), ts=ts))
    implicit_first, implicit_ms, sol = _timed(lambda: jax.block_until_ready(run(z0)), repeats)
    state_size = sum(leaf.size for leaf in jax.tree_util.tree_leaves(z0))
    return {
        "case": case,
        "env_OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "blas_threads_after_import": before,
        "blas_threads_after_runs": cj.blas_threads(),
        "threadpool_info": threadpoolctl.threadpool_info(),
        "lu_first_s": lu_first,
        "lu_ms": lu_ms,
        "solve_loop_first_s": loop_first,
        "solve_loop_ms": loop_ms,
        "solve_loop_max_abs_error_vs_numpy": loop_error,
        "implicit_first_s": implicit_first,
        "implicit_ms": implicit_ms,
        "implicit_steps": int(sol.stats["num_steps"]),
        "implicit_state_size": int(state_size),
        "implicit_successful": bool(sol.result == diffrax.RESULTS.successful),
        "loadavg": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/threads.json")
    parser.add_argument("--worker", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.repeats)))
        return
    cores = os.cpu_count()
    rows = []
    for case in CASES:
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
        env["JAX_PLATFORMS"] = "cpu"
        if case == "threaded":
            env["OPENBLAS_NUM_THREADS"] = str(cores)
        cmd = [sys.executable, __file__, "--worker", case, "--repeats", str(args.repeats)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{case:>20}: LU {row['lu_ms']:.2f} ms, {LOOP} solves {row['solve_loop_ms']:.1f} ms, "
            f"implicit solve {row['implicit_ms']:.1f} ms ({row['implicit_steps']} steps); "
            f"BLAS threads {row['blas_threads_after_runs']}",
            flush=True,
        )
    by_case = {row["case"]: row for row in rows}
    slow = by_case["threaded"]
    ratios = {
        case: {
            key: slow[key] / by_case[case][key] for key in ("lu_ms", "solve_loop_ms", "implicit_ms")
        }
        for case in CASES
        if case != "threaded"
    }
    print("threaded / limited:", json.dumps(ratios, indent=1))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _record import save_record

    record = {
        "problem": (
            f"float64 LU of {SIZE}x{SIZE}; {LOOP} solves in a fori_loop; Kvaerno5 embedding "
            "model K=4 n=15 M=5 d=4 to t=10; each case a fresh process"
        ),
        "cores": cores,
        "repeats": args.repeats,
        "rows": rows,
        "threaded_over_limited": ratios,
    }
    print("wrote", save_record(record, args.out))


if __name__ == "__main__":
    main()
