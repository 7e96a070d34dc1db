"""Sweeps on an accelerator against the CPU cores of the same machine, side by side in one run.

Two sweeps of the standard problem (K=5, n=40 per class, d=8, float64), each at 64, 512 and
4096 members (16, 128, 1024 frustration ratios in [0, 0.5] x 4 seeds), on every platform JAX
sees (``cpu`` always; ``gpu``/``tpu`` where present):

* ``embedding_exact``: the embedding model on its exact sector path, MinL2 at 100 times.
* ``projection_sg``: the stop-gradient projection model on its reduced path (t1 = 200).

Each sweep is one sharded ``jit(vmap)`` call; compile time is reported apart, run time is the
second of two calls. The accelerator's MinL2 is compared with the CPU's member by member (the
largest relative difference is printed, each value against the larger of itself and 1e-12 of
its member's largest value), so a platform that computes something else is seen. The record is
rewritten after every row, so a run stopped by a time limit keeps what it measured.
A size is skipped on a platform once the previous size took over ``--budget`` seconds.

    python benchmarks/bench_accelerator.py [--out benchmarks/results/accelerator.json]
"""

from __future__ import annotations

import argparse
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _record import save_record  # noqa: E402

import collapse_jax as cj  # noqa: E402

SEEDS = 4
RATIOS = (16, 128, 1024)
PROBLEM = {"n_classes": 5, "per_class": 40, "dim": 8}


def _cases():
    ts_e = cj.log_times(1e-2, 1e3, 100)
    ts_p = cj.log_times(1.0, 200.0, 20)
    return {
        "embedding_exact": lambda phis, dev: cj.embedding_sweep(
            phis, SEEDS, ts=ts_e, devices=dev, **PROBLEM
        ),
        "projection_sg": lambda phis, dev: cj.projection_sweep(
            phis, SEEDS, stop_gradient=True, ts=ts_p, devices=dev, **PROBLEM
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/accelerator.json")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per size before skipping")
    args = ap.parse_args()
    platforms = {"cpu": jax.devices("cpu")}
    for name in ("gpu", "tpu"):
        try:
            platforms[name] = jax.devices(name)
        except RuntimeError:
            pass
    print("platforms:", {k: [str(d) for d in v] for k, v in platforms.items()}, flush=True)
    rows, curves = [], {}
    for case, run in _cases().items():
        for platform, devices in platforms.items():
            slow = False
            for F in RATIOS:
                if slow:
                    rows.append({"case": case, "platform": platform, "members": F * SEEDS})
                    continue
                phis = np.linspace(0.0, 0.5, F)
                first = run(phis, devices)
                second = run(phis, devices)
                t = second.metadata
                row = {
                    "case": case,
                    "platform": platform,
                    "members": F * SEEDS,
                    "devices": len(devices),
                    "compile_seconds": first.metadata["compile_seconds"],
                    "run_seconds": t["run_seconds"],
                    "seconds_per_member": t["run_seconds"] / (F * SEEDS),
                    "failed_members": int(np.sum(second.result != 0)),
                }
                curves[(case, platform, F)] = second.min_l2
                ref = curves.get((case, "cpu", F))
                if platform != "cpu" and ref is not None:
                    # relative to each member's own scale: where MinL2 has decayed by 1e12
                    # (or underflowed to 0) its digits are not comparable across platforms
                    scale = np.max(np.abs(ref), axis=-1, keepdims=True)
                    rel = np.abs(second.min_l2 - ref) / np.maximum(np.abs(ref), 1e-12 * scale)
                    row["max_rel_diff_vs_cpu"] = float(np.nanmax(rel))
                rows.append(row)
                print(row, flush=True)
                save_record({"problem": {**PROBLEM, "seeds": SEEDS}, "rows": rows}, args.out)
                slow = first.metadata["compile_seconds"] + 2 * t["run_seconds"] > args.budget
    for row in rows:
        if row["platform"] == "cpu" or "run_seconds" not in row:
            continue
        cpu = next(
            (
                r
                for r in rows
                if r["platform"] == "cpu"
                and r["case"] == row["case"]
                and r["members"] == row["members"]
                and "run_seconds" in r
            ),
            None,
        )
        if cpu is not None:
            row["speedup_vs_cpu"] = cpu["run_seconds"] / row["run_seconds"]
    print("\ncase               platform members  compile s   run s    per member  vs cpu")
    for r in rows:
        if "run_seconds" not in r:
            print(f"{r['case']:<18} {r['platform']:<8} {r['members']:>7}  skipped")
            continue
        print(
            f"{r['case']:<18} {r['platform']:<8} {r['members']:>7}  {r['compile_seconds']:8.2f}"
            f"  {r['run_seconds']:8.3f}  {r['seconds_per_member']:10.2e}"
            f"  {r.get('speedup_vs_cpu', float('nan')):6.1f}x"
        )
    print(save_record({"problem": {**PROBLEM, "seeds": SEEDS}, "rows": rows}, args.out))


if __name__ == "__main__":
    main()
