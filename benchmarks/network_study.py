"""The network against the theory, measured: ``network_study`` on balanced digits.

Plain network over `phi x seeds` (one ``jit(vmap)``), a `phi = 0` run with the encoder's
kernel overlap at its start and end, stop-gradient runs with the learned projection's spectrum
on the label span, and the teacher–student model's late decay; the record goes to
``benchmarks/results/network_study.json`` with machine, devices and versions (the numbers
quoted in docs/network.md).

    .venv/bin/python benchmarks/network_study.py [--steps 20000] [--seeds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from _record import save_record  # noqa: E402

import collapse_jax as cj  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--frustration", type=float, nargs="+", default=[0.0, 0.01, 0.02, 0.04, 0.08])
    p.add_argument("--sg-frustration", type=float, nargs="+", default=[0.02, 0.04])
    p.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "network_study.json")
    )
    a = p.parse_args()
    data = cj.digits_data(balance=True)
    config = cj.NetworkConfig(steps=a.steps)
    start = time.perf_counter()
    study = cj.network_study(
        data, a.frustration, a.seeds, config=config, stop_gradient_frustration=a.sg_frustration
    )
    seconds = time.perf_counter() - start
    sweep = study.pop("result")
    out = {
        "what": "network_study on balanced digits (plain network over phi x seeds, phi = 0 "
        "kernel overlap, stop-gradient spectra, teacher-student late decay)",
        "config": config._asdict(),
        "n_samples": data.n_samples,
        "seconds": seconds,
        "sweep_timing": {k: sweep.metadata[k] for k in ("compile_seconds", "run_seconds")},
        "step": sweep.step.tolist(),
        "min_l2_mean": np.nanmean(sweep.records["min_l2"][:, :, 0], axis=1).tolist(),
        "accuracy_mean": np.nanmean(sweep.records["accuracy"][:, :, 0], axis=1).tolist(),
        "summary": {k: v[:, :, 0].tolist() for k, v in sweep.summary.items()},
        **study,
    }
    print(save_record(out, a.out))
    for k in ("per_ratio", "rate_map", "collapse_map", "phi0", "stop_gradient", "teacher_student"):
        print(k, out[k])


if __name__ == "__main__":
    main()
