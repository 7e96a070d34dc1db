"""Collapse-prevention mechanisms: fields vs independent references, Jacobians,
vmap vs loop, the EMA closed form, and the comparison table's claims from numbers.

References are numpy loops written here from the formulas of
``collapse_jax/_losses/mechanisms.py``; no package code enters them.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    assert_axes_labelled,
    capture_figures,
    embedding_field_reference,
    line_by_label,
    projection_field_reference,
)

import collapse_jax as cj
from collapse_jax._comparison import compare_mechanisms
from collapse_jax._fixed_points import mechanism_fixed_point
from collapse_jax._mechanisms import MECHANISMS, ema_bias_matrix

NAMES = sorted(MECHANISMS)
TAU, TAU_EMA = 0.7, 2.5
VIC = dict(mu=0.8, nu=0.3, gamma=1.5, delta=0.1)


def _alignment():
    """Standard rows plus a fractional row and an inactive row (any A, not only 0/1)."""
    A = np.zeros((9, 3))
    for c in range(3):
        A[2 * c : 2 * c + 2, c] = 1.0
    A[6] = 1.0  # shared
    A[7] = [0.3, 0.0, 0.6]  # fractional
    return A  # row 8 inactive


def _params(name):
    return {"infonce": {"tau": TAU}, "ema": {"tau_ema": TAU_EMA},
            "ema_predictor": {"tau_ema": TAU_EMA}, "vicreg": VIC}.get(name, {})  # fmt: skip


def _state(name, A, d=3, seed=3):
    mech = MECHANISMS[name]
    z = mech.init(jax.random.PRNGKey(seed), A.shape[0], A.shape[1], d)
    if "y_ema" in z._fields:  # a target away from y, so the relaxation is tested
        z = z._replace(y_ema=z.y + 0.5 * jax.random.normal(jax.random.PRNGKey(9), z.y.shape))
    return mech, z, mech.args(jnp.asarray(A), **_params(name))


# --- independent references ---------------------------------------------------------------


def _infonce_reference(x, y, A, tau):
    dx, dy = np.zeros_like(x), np.zeros_like(y)
    for i in range(x.shape[0]):
        logits = np.array([-np.sum((x[i] - y[c]) ** 2) / tau for c in range(y.shape[0])])
        p = np.exp(logits - logits.max())
        p /= p.sum()
        for c in range(y.shape[0]):
            # d/dx_i of (tau/2) A_ic [-log p_c] = A_ic [(x_i - y_c) - sum_k p_k (x_i - y_k)]
            dx[i] -= A[i, c] * ((x[i] - y[c]) - sum(p[k] * (x[i] - y[k]) for k in range(len(p))))
            for k in range(y.shape[0]):
                g = -(x[i] - y[k]) * (k == c) + p[k] * (x[i] - y[k])
                dy[k] -= A[i, c] * g
    return dx, dy


def _vicreg_loss_reference(x, y, A, mu, nu, gamma, delta, eps=1e-4):
    N, d = x.shape
    L = 0.0
    for i in range(N):
        for c in range(y.shape[0]):
            L += 0.5 * A[i, c] * np.sum((x[i] - y[c]) ** 2)
    p = A.max(axis=1)
    P = p.sum()
    m = sum(p[i] * x[i] for i in range(N)) / P
    C = sum(p[i] * np.outer(x[i] - m, x[i] - m) for i in range(N)) / P
    hinge = 0.0
    for j in range(d):
        u = gamma - np.sqrt(C[j, j] + eps)
        hinge += 0.0 if u <= 0 else (u * u / (2 * delta) if u < delta else u - delta / 2)
    off = sum(C[j, k] ** 2 for j in range(d) for k in range(d) if j != k) / d
    return L + P * (mu * hinge + nu * off)


def _numeric_gradient(f, v, h=1e-6):
    g = np.zeros_like(v)
    for idx in np.ndindex(v.shape):
        e = np.zeros_like(v)
        e[idx] = h
        g[idx] = (f(v + e) - f(v - e)) / (2 * h)
    return g


def _reference_field(name, z, A):
    """The field of mechanism ``name`` from the loops above (host float64 arrays)."""
    x, y = np.asarray(z.x), np.asarray(z.y)
    if name == "mse":
        return embedding_field_reference(x, y, A)
    if name == "infonce":
        return _infonce_reference(x, y, A, TAU)
    if name == "vicreg":  # conservative: central differences of the loop loss
        fx = _numeric_gradient(lambda v: _vicreg_loss_reference(v, y, A, **VIC), x)
        fy = _numeric_gradient(lambda v: _vicreg_loss_reference(x, v, A, **VIC), y)
        return -fx, -fy
    if name in ("predictor", "simsiam"):
        return projection_field_reference(x, y, z.W, A, stop_gradient=name == "simsiam")
    e = np.asarray(z.y_ema)
    W = np.asarray(z.W) if name == "ema_predictor" else np.eye(x.shape[1])
    dx, dy, dW = np.zeros_like(x), np.zeros_like(y), np.zeros_like(W)
    for i in range(x.shape[0]):
        for c in range(y.shape[0]):
            r = W @ x[i] - e[c]  # towards the held EMA target
            dx[i] -= A[i, c] * (W.T @ r)
            dW -= A[i, c] * np.outer(r, x[i])
            dy[c] -= A[i, c] * (y[c] - x[i])  # labels towards the held samples
    de = (y - e) / TAU_EMA
    return (dx, dy, de) if name == "ema" else (dx, dy, dW, de)


@pytest.mark.parametrize("name", NAMES)
def test_field_equals_independent_reference(name):
    A = _alignment()
    mech, z, args = _state(name, A)
    F = mech.field()(0.0, z, args)
    ref = _reference_field(name, z, A)
    tol = 1e-7 if name == "vicreg" else 1e-12  # vicreg: finite differences, h = 1e-6
    for got, want in zip(F, ref, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, atol=tol * max(1, np.abs(want).max()))


def test_vicreg_hinge_is_active_in_the_reference_state():
    # The vicreg reference test must exercise the hinge: some std_j below gamma.
    A = _alignment()
    _, z, _ = _state("vicreg", A)
    p = A.max(axis=1)
    x = np.asarray(z.x)
    m = p @ x / p.sum()
    std = np.sqrt((p[:, None] * (x - m) ** 2).sum(0) / p.sum() + 1e-4)
    assert np.any(std < VIC["gamma"] - VIC["delta"])


def test_infonce_loss_equals_loop():
    A = _alignment()
    mech, z, args = _state("infonce", A)
    x, y = np.asarray(z.x), np.asarray(z.y)
    ref = 0.0
    for i in range(A.shape[0]):
        logits = np.array([-np.sum((x[i] - yc) ** 2) / TAU for yc in y])
        logp = logits - np.log(np.sum(np.exp(logits)))
        ref += 0.5 * TAU * np.sum(-A[i] * logp)
    np.testing.assert_allclose(float(mech.loss(z, z, args)), ref, rtol=1e-13)


def test_ema_limits_are_mse_and_simsiam():
    """With y_ema = y the EMA fields equal MSE's (x, y) and SimSiam's (x, y, W)."""
    A = jnp.asarray(_alignment())
    ema, z, args = _state("ema", np.asarray(A))
    z = z._replace(y_ema=z.y)
    F = ema.field()(0.0, z, args)
    G = MECHANISMS["mse"].field()(0.0, cj.EmbeddingState(z.x, z.y), MECHANISMS["mse"].args(A))
    np.testing.assert_allclose(np.asarray(F.x), np.asarray(G.x), atol=1e-13)
    np.testing.assert_allclose(np.asarray(F.y), np.asarray(G.y), atol=1e-13)
    np.testing.assert_allclose(np.asarray(F.y_ema), 0.0, atol=0)
    emp, z, args = _state("ema_predictor", np.asarray(A))
    z = z._replace(y_ema=z.y)
    F = emp.field()(0.0, z, args)
    s = MECHANISMS["simsiam"]
    G = s.field()(0.0, cj.ProjectionState(z.x, z.y, z.W), s.args(A))
    for a, b in zip(F[:3], G, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_jacobian_matches_finite_differences_and_is_symmetric_iff_conservative(name):
    A = _alignment()
    mech, z, args = _state(name, A, seed=5)
    f = mech.field()
    J = cj.jacobian(f, z, args)
    J_fd = cj.finite_difference_jacobian(f, z, args)
    assert np.abs(J - J_fd).max() < 1e-6 * np.abs(J).max()
    rel_asym = cj.asymmetry_norm(J) / np.linalg.norm(J)
    if mech.conservative:
        assert rel_asym < 1e-13
    else:
        assert rel_asym > 1e-2


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_frustration_masks_equals_loop(name):
    mech = MECHANISMS[name]
    phis = np.array([0.0, 0.1, 0.3])
    data = cj.frustration_data(3, 3, phis, max_shared=4)
    z = mech.init(jax.random.PRNGKey(2), data.n_samples, 3, 3)
    f = mech.field()

    def one(d):
        return f(0.0, z, mech.args(d.matrix()))

    batched = jax.vmap(one)(data)
    for k, phi in enumerate(phis):
        looped = one(cj.frustration_data(3, 3, phi, max_shared=4))
        for a, b in zip(batched, looped, strict=True):
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b), rtol=1e-10, atol=1e-12)


def test_ema_spectrum_contains_the_closed_form_bias_sector():
    """EMA is linear: the 3x3 bias matrix's eigenvalues appear (K-1) d times in J."""
    K, n, M, d = 3, 3, 2, 2
    data = cj.standard_data(K, n, M)
    mech = MECHANISMS["ema"]
    z = mech.init(jax.random.PRNGKey(0), data.n_samples, K, d)
    J = cj.jacobian(mech.field(), z, mech.args(data.matrix(), TAU_EMA))
    ev = cj.eigenvalues(J)
    for lam in np.linalg.eigvals(ema_bias_matrix(n, M, TAU_EMA)):
        count = np.sum(np.abs(ev - lam) < 1e-9)
        assert count >= (K - 1) * d, (lam, count)
    # M > 0: the slowest bias eigenvalue is negative (collapse); M = 0: zero (conserved)
    assert np.max(np.linalg.eigvals(ema_bias_matrix(n, M, TAU_EMA)).real) < -1e-3
    np.testing.assert_allclose(np.max(np.linalg.eigvals(ema_bias_matrix(n, 0, 5.0)).real), 0.0,
                               atol=1e-14)  # fmt: skip


def test_train_with_sgd_follows_the_flow():
    """Small-step gradient descent on a mechanism's loss tracks its flow (EMA included)."""
    import diffrax
    import optax

    from collapse_jax._comparison import train_mechanism

    data = cj.standard_data(3, 3, 1)
    for name in ("ema", "infonce"):
        mech = MECHANISMS[name]
        z0 = mech.init(jax.random.PRNGKey(1), data.n_samples, 3, 2)
        lr, steps = 1e-3, 2000
        _, states = train_mechanism(mech, data, z0, optax.sgd(lr), steps=steps, dt=lr,
                                    save_every=steps)  # fmt: skip
        sol = cj.simulate(mech.field(), z0, mech.args(data.matrix()), ts=jnp.array([lr * steps]),
                          solver=diffrax.Tsit5(), rtol=1e-10, atol=1e-12)  # fmt: skip
        err = np.abs(np.asarray(states.y[-1]) - np.asarray(sol.ys.y[-1])).max()
        assert err < 5e-3, (name, err)  # Euler's O(lr) error over t = 2
        assert err > 1e-7  # and it is a different (discrete) dynamics, not the flow itself


# --- the comparison table's claims ------------------------------------------------------


@pytest.fixture(scope="module")
def comparison():
    return compare_mechanisms(
        ["mse", "ema", "simsiam"],
        frustration=(0.0, 0.25),
        per_class=4,
        dim=4,
        t1=150.0,
        points=30,
        values={"ema": (2.0,)},
    )


def test_comparison_claims_mse_and_ema_collapse_simsiam_separates(comparison):
    rows = {r["mechanism"]: r for r in comparison["table"]}
    for name in ("mse", "ema"):
        assert rows[name]["status"] == [["separated"], ["collapsed"]]
        assert rows[name]["final_min_l2_ratio"][1] < 1e-2
        assert rows[name]["separated_up_to"] == 0.0
    assert rows["simsiam"]["status"] == [["separated"], ["separated"]]
    assert rows["simsiam"]["final_min_l2_ratio"][1] > 0.1
    assert rows["simsiam"]["separated_up_to"] == 0.25
    res = comparison["results"]
    assert np.all(res["mse"]["result"] == 0) and np.all(res["simsiam"]["result"] == 0)
    # the EMA slows collapse: its late rate is the closed-form slowest bias eigenvalue (fit
    # above 1e-5 of the start, clear of the integrator's tolerance, rtol 1e-7)
    t = res["ema"]["t"]

    def rate(name):
        ml = res[name]["min_l2"][1, 0, 0]
        return cj.fit_slow_rate(t, ml, floor=1e-5 * ml[0])

    lam = np.max(np.linalg.eigvals(ema_bias_matrix(4, float(res["ema"]["shared"][1]), 2.0)).real)
    np.testing.assert_allclose(rate("ema"), lam, rtol=2e-2)
    lp, _ = cj.lambda_pm(4.0, float(res["mse"]["shared"][1]))
    np.testing.assert_allclose(rate("mse"), float(lp), rtol=2e-2)
    assert lam > float(lp)  # slower than MSE, same fate


def test_comparison_diagnostics_of_collapsed_and_separated_members(comparison):
    res = comparison["results"]
    # docs/theory.md §5 on the final clean samples: class means collapse with MSE at M > 0 ...
    assert res["mse"]["diag_min_l2_class_means"][1, 0, 0] < 1e-2
    # ... and stay apart with stop-gradient + predictor, samples classified by class means
    assert res["simsiam"]["diag_min_l2_class_means"][1, 0, 0] > 0.1
    assert res["simsiam"]["diag_ncm_accuracy"][1, 0, 0] == 1.0


@pytest.mark.slow
def test_full_quick_comparison_every_mechanism():
    out = compare_mechanisms()
    rows = {(r["mechanism"], r["value"]): r for r in out["table"]}
    for (name, _), r in rows.items():
        if name in ("mse", "ema", "predictor"):
            assert r["separated_up_to"] == 0.0, r
        else:  # infonce, vicreg, simsiam, ema_predictor
            assert r["separated_up_to"] == max(r["frustration"]), r


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mse", "ema", "simsiam", "vicreg"])
def test_fixed_point_analysis(name):
    data = cj.standard_data(3, 3, 1)
    mech = MECHANISMS[name]
    z0 = mech.init(jax.random.PRNGKey(1), data.n_samples, 3, 4)
    out = mechanism_fixed_point(mech, data, z0)
    assert out["status"] == "fixed-point"
    assert out["max_real"] < 1e-7
    if name in ("mse", "ema"):
        assert out["min_l2"] < 1e-6
    else:
        assert out["min_l2"] > 1e-2


def test_cli_mechanisms_rejects_unknown_names_in_one_line(capsys):
    from collapse_jax.cli import main

    assert main(["mechanisms", "--only", "mse,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--only" in err[0] and "nope" in err[0]


@pytest.mark.slow
def test_cli_mechanisms_quick_json(tmp_path, capsys, monkeypatch):
    import json

    from collapse_jax.cli import main

    saved = capture_figures(monkeypatch)
    argv = ["mechanisms", "--quick", "--only", "mse,simsiam", "--no-training", "--json"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["mechanism"]: r for r in out["table"]}
    assert rows["mse"]["separated_up_to"] == 0.0
    assert rows["simsiam"]["separated_up_to"] == 0.25
    assert (tmp_path / "summary.png").exists() and (tmp_path / "mechanisms.json").exists()
    # the figures show the numbers written to mechanisms.json
    figs = {os.path.basename(path): fig for fig, path in saved}
    assert sorted(figs) == ["mse.png", "simsiam.png", "summary.png"]
    results = json.loads((tmp_path / "mechanisms.json").read_text())["results"]
    summary = figs["summary.png"]
    for name in ("mse", "simsiam"):
        r = results[name]
        final, initial = np.asarray(r["final_min_l2"]), np.asarray(r["initial_min_l2"])
        ratio = np.median(final[:, 0] / initial[:, 0], axis=-1)
        drawn = line_by_label(summary.axes[0], name)
        np.testing.assert_allclose(drawn[:, 0], r["frustration"], rtol=1e-15)
        np.testing.assert_allclose(drawn[:, 1], np.clip(ratio, 1e-12, None), rtol=1e-12)
        traj = line_by_label(summary.axes[1], name)  # MinL2(t)/MinL2(0), largest ratio, seed 0
        assert np.all(np.isfinite(traj)) and traj[0, 1] == 1.0
        last = r["final_min_l2"][-1][0][0] / r["initial_min_l2"][-1][0][0]
        np.testing.assert_allclose(traj[-1, 1], max(last, 1e-12), rtol=1e-12)
        phase = figs[f"{name}.png"]
        assert_axes_labelled(phase)
        np.testing.assert_allclose(
            line_by_label(phase.axes[0], "(no hyper-parameter)")[:, 1],
            np.clip(ratio, 1e-12, None),
            rtol=1e-12,
        )
    assert_axes_labelled(summary)


def _synthetic_sweep(name, hyper, values, F=4, S=3, T=6, seed=0):
    """A mechanism_sweep-shaped dict of random numbers (for the figure builders)."""
    rng = np.random.default_rng(seed)
    H = len(values)
    ml = np.exp(rng.normal(size=(F, H, S, T)))
    ml[0, 0, 0, -1] = 1e-20  # below the floor: drawn at 1e-12
    acc = rng.uniform(size=(F, H, S, T))
    acc[1, :, :, -1] = np.nan  # collapsed to round-off: accuracy undefined
    acc[2, :, 0, -1] = np.nan  # one seed undefined: mean of the others
    return {
        "mechanism": name, "hyper": hyper, "values": np.asarray(values, dtype=float),
        "frustration": np.linspace(0.0, 0.3, F), "min_l2": ml, "accuracy": acc,
        "slow_rate": rng.normal(size=(F, H, S)), "diag_rankme": rng.uniform(1, 3, size=(F, H, S)),
        "n_classes": 3, "per_class": 3, "dim": 4, "seeds": np.arange(S),
        "t": np.logspace(-1, 2, T),
    }  # fmt: skip


def test_mechanism_figures_plot_the_sweep_numbers():
    from collapse_jax._plots import mechanism_phase_figure, mechanism_summary_figure

    ema = _synthetic_sweep("ema", "tau_ema", [0.5, 1.0, 4.0])
    fig = mechanism_phase_figure(ema)
    assert_axes_labelled(fig)
    for h, v in enumerate(ema["values"]):
        label = f"tau_ema = {v:g}"
        ratio = np.median(ema["min_l2"][:, h, :, -1] / ema["min_l2"][:, h, :, 0], axis=-1)
        a = line_by_label(fig.axes[0], label)
        np.testing.assert_array_equal(a[:, 0], ema["frustration"])
        np.testing.assert_allclose(a[:, 1], np.clip(ratio, 1e-12, None), rtol=1e-15)
        b = line_by_label(fig.axes[1], label)[:, 1]
        np.testing.assert_allclose(b, np.median(ema["slow_rate"][:, h], axis=-1), rtol=1e-15)
        acc = ema["accuracy"][:, h, :, -1]
        ref = [np.mean(r[np.isfinite(r)]) if np.isfinite(r).any() else np.nan for r in acc]
        np.testing.assert_allclose(line_by_label(fig.axes[2], label)[:, 1], ref, rtol=1e-15)
        d = line_by_label(fig.axes[3], label)[:, 1]
        np.testing.assert_allclose(d, np.median(ema["diag_rankme"][:, h], axis=-1), rtol=1e-15)
    assert line_by_label(fig.axes[0], "tau_ema = 0.5")[0, 1] >= 1e-12
    mse = _synthetic_sweep("mse", None, [np.nan], seed=1)
    summary = mechanism_summary_figure({"mse": mse, "ema": ema})
    assert_axes_labelled(summary)
    h = int(np.argmin(np.abs(ema["values"] - MECHANISMS["ema"].default)))  # the default value
    for label, res, k in (("mse", mse, 0), (f"ema (tau_ema={ema['values'][h]:g})", ema, h)):
        ratio = np.median(res["min_l2"][:, k, :, -1] / res["min_l2"][:, k, :, 0], axis=-1)
        np.testing.assert_allclose(
            line_by_label(summary.axes[0], label)[:, 1], np.clip(ratio, 1e-12, None), rtol=1e-15
        )
        traj = line_by_label(summary.axes[1], label)
        np.testing.assert_array_equal(traj[:, 0], res["t"])
        np.testing.assert_allclose(
            traj[:, 1], res["min_l2"][-1, k, 0] / res["min_l2"][-1, k, 0, 0], rtol=1e-15
        )
