"""The network against the theory: measurements that put a trained network beside the minimal
model and the teacher–student model (docs/network.md, "Against the minimal model").

* [`minimal_model_rates`][collapse_jax.minimal_model_rates]: the minimal model's slow
  eigenvalue `lambda_+` for the network's counts (balanced classes: `n` clean samples per
  class, `M` shared), converted to a rate per optimiser step.
* [`time_scale_map`][collapse_jax.time_scale_map]: the one constant `c` that best maps those
  rates onto the network's measured ones, and how far each ratio is from it.
* [`local_exponent`][collapse_jax.local_exponent]: `d log v / d log step` along a curve; flat
  for a power law, falling like `r step` for an exponential.
* [`encoder_kernel_overlap`][collapse_jax.encoder_kernel_overlap]: the encoder's empirical
  tangent kernel between samples of different classes relative to the same class: how much a
  gradient step on one class moves the embeddings of the others.
* the eigenvalues of a learned projection `W` restricted to the span of the labels
  ([`label_span_spectrum`][collapse_jax.label_span_spectrum], the projection model's own),
  against the stop-gradient fixed point `{1, n/(n+M)}` of the minimal model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._exact import lambda_pm

__all__ = [
    "minimal_model_rates",
    "time_scale_map",
    "local_exponent",
    "minimal_model_comparison",
    "encoder_kernel_overlap",
    "network_study",
]


def minimal_model_rates(n_samples: int, n_classes: int, frustration, lr: float) -> dict:
    """The minimal model's slow rate for the counts of a network training, per step.

    With `N` training samples in `K` balanced classes and `M = round(phi N)` shared, each class
    keeps `n = (N - M) / K` clean samples. The minimal model with those counts has the slow
    eigenvalue `lambda_+(n, M)` (docs/theory.md §2) for the summed loss; the network's loss is a
    mean over the `N` samples (its alignment matrix is divided by `N`), so one SGD step of
    learning rate `lr` advances the flow of the summed loss by `lr / N`.

    Returns ``shared`` `M`, ``per_class`` `n`, ``lambda_plus`` (per unit time of the summed
    loss), ``rate_per_step`` `= lr lambda_+ / N` and ``n_over_n_plus_m`` (`n/(n+M)`, the
    stop-gradient projection's eigenvalue on the class-bias directions), each `(F,)`.
    """
    phis = np.atleast_1d(np.asarray(frustration, dtype=np.float64))
    M = np.round(phis * n_samples)
    n = (n_samples - M) / n_classes
    lp, _ = lambda_pm(n, M)
    lp = np.asarray(lp, dtype=np.float64)
    return {
        "shared": M,
        "per_class": n,
        "lambda_plus": lp,
        "rate_per_step": lr * lp / n_samples,
        "n_over_n_plus_m": n / (n + M),
    }


def time_scale_map(measured, predicted) -> dict:
    """The one constant `c` with ``measured ≈ c * predicted`` (a least-squares fit of
    `log |measured| - log |predicted|`, i.e. the geometric mean of the ratios), over the
    entries where both are finite and non-zero.

    Returns ``c``, ``ratios`` (``measured / predicted`` per entry), ``spread`` (largest ratio
    over smallest: 1 when one constant maps every entry exactly) and ``log_rms`` (the
    root-mean-square of `log(ratio / c)`).
    """
    m = np.asarray(measured, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = m / p
    ok = np.isfinite(ratios) & (ratios > 0)
    if not ok.any():
        nan = float("nan")
        return {"c": nan, "ratios": ratios, "spread": nan, "log_rms": nan}
    logs = np.log(ratios[ok])
    c = float(np.exp(logs.mean()))
    return {
        "c": c,
        "ratios": ratios,
        "spread": float(ratios[ok].max() / ratios[ok].min()),
        "log_rms": float(np.sqrt(np.mean((logs - np.log(c)) ** 2))),
    }


def minimal_model_comparison(sweep, n_samples: int, n_classes: int) -> dict:
    """A [`NetworkSweep`][collapse_jax.NetworkSweep] beside the minimal model with its counts
    (its first learning rate).

    Returns ``minimal`` (the rates of
    [`minimal_model_rates`][collapse_jax.minimal_model_rates]), the seed means (NaN-ignoring,
    [`mean_over_seeds`][collapse_jax.mean_over_seeds]) ``slow_rate_fit`` and ``collapse_step``
    per ratio, ``slow_time`` (`1/|lr lambda_+/N|`, the minimal model's slow time in steps;
    inf at `phi = 0`), and the [`time_scale_map`][collapse_jax.time_scale_map]s over the
    ratios `phi > 0`: ``rate_map`` (network rate against `lr lambda_+/N`) and ``collapse_map``
    (collapse step against the slow time).
    """
    from ._sweep import mean_over_seeds

    summ = {k: np.asarray(v)[:, :, 0] for k, v in sweep.summary.items()}
    mm = minimal_model_rates(n_samples, n_classes, sweep.frustration, float(sweep.lr[0]))
    rate = mean_over_seeds(summ["slow_rate_fit"])
    collapse = mean_over_seeds(summ["collapse_step"])
    pos = np.asarray(sweep.frustration) > 0
    with np.errstate(divide="ignore"):
        slow_time = 1.0 / np.abs(mm["rate_per_step"])
    return {
        "minimal": mm,
        "slow_rate_fit": rate,
        "collapse_step": collapse,
        "slow_time": slow_time,
        "rate_map": time_scale_map(rate[pos], mm["rate_per_step"][pos]),
        "collapse_map": time_scale_map(collapse[pos], slow_time[pos]),
    }


def local_exponent(step, values) -> tuple[np.ndarray, np.ndarray]:
    """`d log v / d log step` by centred differences between neighbouring positive steps.

    Returns ``(midpoints, exponents)``: the geometric mean of each pair of steps and the slope
    of `log v` against `log step` between them (NaN where a value is not finite and positive).
    A power law `v ~ step^p` gives `p` everywhere; an exponential `e^{r step}` gives
    `r step`, growing in magnitude with the step.
    """
    s = np.asarray(step, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = s > 0
    s, v = s[keep], v[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        lv = np.where(np.isfinite(v) & (v > 0), np.log(v), np.nan)
        slope = np.diff(lv) / np.diff(np.log(s))
    return np.sqrt(s[1:] * s[:-1]), slope


def encoder_kernel_overlap(encoder, inputs, labels, n_classes: int) -> dict:
    """The encoder's empirical tangent kernel, averaged within and across classes.

    `Theta_ij = sum_theta df(xi_i)/dtheta . df(xi_j)/dtheta` (summed over the embedding
    dimensions): a gradient step that moves sample `j`'s embedding by `v` moves sample `i`'s by
    `Theta_ij v / ...` in the linearised network. In the minimal model every sample moves on its
    own (`Theta = I`); a shared sample is the only coupling between classes. Here every pair of
    samples is coupled. Returns ``within`` and ``across`` (mean kernel over pairs `i != j` of the
    same / of different classes), ``ratio`` (``across / within``) and ``diagonal`` (mean
    `Theta_ii`), computed in float64 on the inputs given (pass a subsample: the cost is
    `O(n^2 P)` for `n` inputs and `P` parameters).
    """
    inputs = jnp.asarray(inputs)
    labels = np.asarray(labels)
    params, unravel = ravel_pytree(encoder)

    def embed(p):
        return unravel(p)(inputs).reshape(-1)

    J = np.asarray(jax.jacrev(embed)(params), dtype=np.float64)  # (n d, P)
    n = inputs.shape[0]
    d = J.shape[0] // n
    J = J.reshape(n, d, -1)
    theta = np.einsum("idp,jdp->ij", J, J)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(n, dtype=bool)
    within = float(theta[same & off].mean())
    across = float(theta[~same].mean())
    return {
        "within": within,
        "across": across,
        "ratio": across / within,
        "diagonal": float(np.mean(np.diag(theta))),
    }


def network_study(
    data,
    frustration=(0.0, 0.01, 0.02, 0.04, 0.08),
    seeds=3,
    *,
    lr: float | None = None,
    config=None,
    stop_gradient_frustration=(0.02,),
    kernel_samples: int = 200,
    teacher_student_frustration=(0.05, 0.1, 0.2),
    teacher_student_t1: float = 400.0,
) -> dict:
    """The network against the minimal and the teacher–student models, in numbers.

    Runs (1) the plain network over ``frustration x seeds`` in one
    [`network_sweep`][collapse_jax.network_sweep]; (2) one plain run at `phi = 0` and one
    stop-gradient run per ratio of ``stop_gradient_frustration`` (seed 0) keeping their final
    states; (3) the teacher–student model (plain, gradient flow) at
    ``teacher_student_frustration``. Pass balanced data (``balance=True``) so that the
    per-class count `n` of the minimal model is defined.

    Returns a dict of plain numbers and lists (JSON-ready): ``sweep`` (the
    [`NetworkSweep`][collapse_jax.NetworkSweep] itself under ``"result"``), per ratio the
    seed means of the late exponential rate, power-law exponent, collapse step and how many
    seeds prefer each form; ``minimal_model`` (the rates of
    [`minimal_model_rates`][collapse_jax.minimal_model_rates]) and the time-scale maps of the
    rate and of the collapse step ([`time_scale_map`][collapse_jax.time_scale_map]);
    ``phi0`` (MinL2, its spread-relative value and the kernel overlap
    [`encoder_kernel_overlap`][collapse_jax.encoder_kernel_overlap] at the start and the end);
    ``stop_gradient`` (accuracies, MinL2 and
    [`label_span_spectrum`][collapse_jax.label_span_spectrum] against `{1, n/(n+M)}`);
    ``teacher_student`` (late decay form and rate per frustration).
    """
    from ._models.network import network_start
    from ._models.projection import label_span_spectrum
    from ._models.teacher_student import run_teacher_student
    from ._network import DEFAULT_LR, NetworkConfig, fit_late_decay, network_run, network_sweep
    from ._sweep import mean_over_seeds

    config = NetworkConfig() if config is None else config
    lr = DEFAULT_LR if lr is None else float(lr)
    sweep = network_sweep(data, frustration, seeds, lr=lr, config=config._replace(variant="plain"))
    summ = {k: v[:, :, 0] for k, v in sweep.summary.items()}
    counts = np.bincount(np.asarray(data.labels), minlength=data.n_classes)
    cmp = minimal_model_comparison(sweep, data.n_samples, data.n_classes)
    mm, rate, collapse = cmp["minimal"], cmp["slow_rate_fit"], cmp["collapse_step"]
    rate_map, collapse_map = cmp["rate_map"], cmp["collapse_map"]
    per_ratio = {
        "frustration": sweep.frustration.tolist(),
        "shared": sweep.shared.tolist(),
        "slow_rate_fit": rate.tolist(),
        "power_law_exponent": mean_over_seeds(summ["power_law_exponent"]).tolist(),
        "collapse_step": collapse.tolist(),
        "collapsed_seeds": np.sum(np.isfinite(summ["collapse_step"]), axis=1).tolist(),
        "peak_accuracy": mean_over_seeds(summ["peak_accuracy"]).tolist(),
        "final_accuracy": mean_over_seeds(summ["final_accuracy"]).tolist(),
        "power_law_preferred": np.sum(summ["better_fit"] == "power law", axis=1).tolist(),
        "exponential_preferred": np.sum(summ["better_fit"] == "exponential", axis=1).tolist(),
    }

    # phi = 0: what shrinks MinL2
    key = jax.random.PRNGKey(0)
    plain0 = network_run(
        data,
        frustration=0.0,
        seed=0,
        lr=lr,
        config=config._replace(variant="plain"),
        return_state=True,
    )
    start = network_start(
        "plain",
        key,
        data,
        config.dim,
        width=config.width,
        depth=config.depth,
        activation=config.activation,
        label_scale=config.label_scale,
    )
    sub = np.random.default_rng(0).choice(
        data.n_samples, min(kernel_samples, data.n_samples), replace=False
    )
    X_sub, lab_sub = data.X[np.sort(sub)], np.asarray(data.labels)[np.sort(sub)]
    phi0 = {
        "min_l2": [float(plain0["min_l2"][0]), float(plain0["min_l2"][-1])],
        "spread": [float(plain0["spread"][0]), float(plain0["spread"][-1])],
        "relative_min_l2": [
            float(plain0["min_l2"][0] / plain0["spread"][0]),
            float(plain0["min_l2"][-1] / plain0["spread"][-1]),
        ],
        "accuracy": [float(plain0["peak_accuracy"]), float(plain0["final_accuracy"])],
        "kernel_start": encoder_kernel_overlap(start.x, X_sub, lab_sub, data.n_classes),
        "kernel_end": encoder_kernel_overlap(plain0["state"].x, X_sub, lab_sub, data.n_classes),
        "power_law_exponent": plain0["power_law_exponent"],
        "slow_rate_fit": plain0["slow_rate_fit"],
    }
    # relative MinL2 of every member at the end (scale-free: a global contraction leaves it)
    rel = sweep.records["min_l2"][:, :, 0] / sweep.records["spread"][:, :, 0]
    per_ratio["relative_min_l2_start"] = rel[..., 0].mean(axis=1).tolist()
    per_ratio["relative_min_l2_end"] = rel[..., -1].mean(axis=1).tolist()

    sg = []
    for phi in stop_gradient_frustration:
        run = network_run(
            data,
            frustration=phi,
            seed=0,
            lr=lr,
            config=config._replace(variant="stop-gradient"),
            return_state=True,
        )
        ref = minimal_model_rates(data.n_samples, data.n_classes, phi, lr)
        span = label_span_spectrum(run["state"].W, run["state"].y)
        eig = span["eigenvalues"]
        sg.append(
            {
                "frustration": float(phi),
                "peak_accuracy": run["peak_accuracy"],
                "final_accuracy": run["final_accuracy"],
                "min_l2_at_peak": run["min_l2_at_peak"],
                "final_min_l2": run["final_min_l2"],
                "min_l2_min_late": float(np.min(run["min_l2"][run["step"] >= run["step"][-1] / 2])),
                "label_span_eigenvalues": np.sort(np.abs(eig)).tolist(),
                "label_span_leakage": span["leakage"],
                "predicted": [float(ref["n_over_n_plus_m"][0])] * (data.n_classes - 1) + [1.0],
            }
        )

    ts = []
    for f in teacher_student_frustration:
        r = run_teacher_student(f, 0, t1=teacher_student_t1)
        fit = fit_late_decay(r["t"], r["min_l2"])
        ts.append(
            {
                "frustration": float(f),
                **{
                    k: fit[k]
                    for k in (
                        "slow_rate_fit",
                        "power_law_exponent",
                        "better_fit",
                        "rss_exponential",
                        "rss_power_law",
                    )
                },
                "slow_rate_hessian": float(r.get("slow_rate_hessian", np.nan)),
            }
        )

    return {
        "result": sweep,
        "class_counts": counts.tolist(),
        "lr": lr,
        "per_ratio": per_ratio,
        "minimal_model": {k: np.asarray(v).tolist() for k, v in mm.items()},
        "rate_map": {
            k: (np.asarray(v).tolist() if k == "ratios" else v) for k, v in rate_map.items()
        },
        "collapse_map": {
            k: (np.asarray(v).tolist() if k == "ratios" else v) for k, v in collapse_map.items()
        },
        "phi0": phi0,
        "stop_gradient": sg,
        "teacher_student": ts,
    }
