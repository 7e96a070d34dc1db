"""Teacher-student model (docs/theory.md §4): figures and the numbers quoted in the README.

Run: ``PYTHONPATH=. python benchmarks/teacher_student_figures.py [OUT_DIR]`` (default
``results/teacher_student``). Writes

* ``collapse_vs_f.png``: plain model, log MinL2 vs t and vs t phi_eff for several f;
* ``stop_gradient.png``: projection model with and without stop-gradient, f = 0.1 and 0.2;
* ``numbers.json``: fitted vs Hessian slow rates, accuracies, GD step-size departure.
"""

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import optax  # noqa: E402

import collapse_jax as cj  # noqa: E402
from collapse_jax import (  # noqa: E402
    TeacherStudentConfig,
    run_teacher_student,
    save_figure,  # noqa: E402
)


def gd_departure(f=0.1, seed=0, t_end=60.0, lrs=(0.01, 0.05, 0.1, 0.2, 0.3, 0.35, 0.4)):
    """Max relative error of GD's MinL2 at t = k lr vs the closed-form flow, t <= t_end."""
    kd, ks = jax.random.split(jax.random.PRNGKey(seed))
    data = cj.teacher_student_data(kd, f)
    args = data.moments()
    state = cj.init_teacher_student_state(ks)
    lam_max = float(np.linalg.eigvalsh(cj.teacher_student_hessian(args)).max())
    rows = []
    for lr in lrs:
        steps = int(round(t_end / lr))
        steps -= steps % 10
        k, states = cj.train(
            cj.teacher_student_loss, state, args, optax.sgd(lr), steps=steps, save_every=steps // 10
        )
        t = np.asarray(k) * lr
        exact = cj.teacher_student_exact_min_l2(state, args, t)
        gd = np.linalg.norm(np.asarray(states.y[:, 0] - states.y[:, 1]), axis=-1)
        rows.append({"lr": lr, "max_rel_error": float(np.max(np.abs(gd / exact - 1)))})
    return {"lambda_max": lam_max, "stability_limit_2_over_lambda_max": 2 / lam_max, "rows": rows}


def main(out="results/teacher_student"):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    numbers = {"plain": [], "projection": []}
    start = time.perf_counter()
    plain = []
    for f in (0.0, 0.1, 0.2, 0.3):
        r = run_teacher_student(f, 0, t1=400.0)
        plain.append(r)
        numbers["plain"].append(
            {
                k: r[k]
                for k in (
                    "frustration",
                    "slow_rate_fit",
                    "slow_rate_hessian",
                    "final_accuracy",
                    "peak_accuracy",
                    "steps",
                )
            }
        )
    save_figure(
        cj.teacher_student_figure(plain, title="plain linear student, seed 0"),
        out / "collapse_vs_f.png",
    )
    proj = []
    for f in (0.1, 0.2):
        for sg in (False, True):
            r = run_teacher_student(f, 0, TeacherStudentConfig("projection", sg), t1=1000.0)
            proj.append(r)
            numbers["projection"].append(
                {
                    k: r[k]
                    for k in (
                        "frustration",
                        "stop_gradient",
                        "slow_rate_fit",
                        "final_min_l2",
                        "final_accuracy",
                        "peak_accuracy",
                        "accuracy_fall_time",
                        "steps",
                    )
                }
            )
    save_figure(
        cj.teacher_student_figure(
            proj, title="projection head with / without stop-gradient, seed 0"
        ),
        out / "stop_gradient.png",
    )
    numbers["gd_departure"] = gd_departure()
    numbers["seconds"] = time.perf_counter() - start
    (out / "numbers.json").write_text(json.dumps(numbers, indent=1))
    print(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
