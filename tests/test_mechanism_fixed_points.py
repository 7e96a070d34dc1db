"""Fixed points of the collapse-prevention mechanisms: Jacobians at the steady
state against central finite differences, zero-mode counts against the predictions of
``predicted_zero_modes`` (docs/mechanisms.md) and against the finite-difference spectrum."""

import jax
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax._comparison import fixed_point_analysis
from collapse_jax._fixed_points import mechanism_fixed_point, predicted_zero_modes
from collapse_jax._mechanisms import MECHANISMS
from collapse_jax._spectral import finite_difference_jacobian, jacobian

FD_ZERO_TOL = 1e-5  # finite differences (h = 1e-6) resolve eigenvalues to ~1e-9 here


def test_graph_component_count_gives_mse_zero_modes_without_integration():
    # K=3, n=2, d=3; M=0: three components (one per class), M=1: one.
    for M, expected in ((0, 9), (1, 3)):
        data = cj.standard_data(3, 2, M)
        z = MECHANISMS["mse"].init(jax.random.PRNGKey(0), data.n_samples, 3, 3)
        assert predicted_zero_modes("mse", z, data)[0] == expected
    # an inactive row is a component of its own: d more zero modes
    data = cj.standard_data(3, 2, 1, max_shared=2)
    z = MECHANISMS["mse"].init(jax.random.PRNGKey(0), data.n_samples, 3, 3)
    assert predicted_zero_modes("mse", z, data)[0] == 6


def _check(name, M, d=3, n=2, seed=0):
    data = cj.standard_data(3, n, M)
    mech = MECHANISMS[name]
    z0 = mech.init(jax.random.PRNGKey(seed), data.n_samples, 3, d)
    out = mechanism_fixed_point(mech, data, z0, t_max=1e4)
    assert out["status"] == "fixed-point" and out["residual"] < 1e-10
    assert out["max_real"] < 1e-7
    args = mech.args(data.matrix())
    J_fd = finite_difference_jacobian(mech.field(), out["state"], args, step=1e-6)
    J = np.asarray(jacobian(mech.field(), out["state"], args))
    assert np.max(np.abs(J - J_fd)) < 1e-7
    fd_zero = int(np.sum(np.abs(np.linalg.eigvals(J_fd)) <= FD_ZERO_TOL))
    pred, _ = predicted_zero_modes(mech, out["state"], data)
    return out, fd_zero, pred


@pytest.mark.parametrize("name,M", [("ema", 1), ("simsiam", 1)])
def test_fixed_point_zero_modes_match_prediction_and_finite_differences(name, M):
    out, fd_zero, pred = _check(name, M)
    assert out["zero_modes"] == pred == fd_zero
    if name == "ema":  # collapsed: only the global translation (d = 3) is left
        assert pred == 3 and out["min_l2"] < 1e-8
    else:  # separated branch of P2
        assert out["min_l2"] > 1e-2


@pytest.mark.slow
def test_fixed_point_analysis_table_matches_predictions():
    """The numbers of docs/mechanisms.md (K=3, n=6, d=4, seed 0, phi = 0 and 0.1)."""
    rows = {(r["mechanism"], r["shared"]): r for r in fixed_point_analysis()}
    expected = {  # measured zero modes, each equal to the prediction where there is one
        ("mse", 0): 12, ("mse", 2): 4, ("ema", 0): 12, ("ema", 2): 4,
        ("predictor", 0): 18, ("predictor", 2): 16, ("simsiam", 0): 44, ("simsiam", 2): 32,
        ("ema_predictor", 0): 30, ("ema_predictor", 2): 32, ("vicreg", 0): 6, ("vicreg", 2): 6,
    }  # fmt: skip
    for key, zero in expected.items():
        r = rows[key]
        assert r["status"] == "fixed-point", r
        assert r["residual"] < 1e-10 and r["max_real"] < 1e-7, r
        assert r["zero_modes"] == zero, r
        if r["zero_modes_predicted"] is not None:
            assert r["zero_modes_predicted"] == zero, r
    for M in (0, 2):  # InfoNCE: no fixed point, the separation keeps growing
        r = rows[("infonce", M)]
        assert r["status"] == "slow-transient" and r["min_l2"] > 4.0, r


@pytest.mark.slow
@pytest.mark.parametrize("name", ["predictor", "vicreg", "ema_predictor"])
def test_zero_modes_of_the_finite_difference_jacobian(name):
    out, fd_zero, pred = _check(name, 1, d=4, n=3)
    assert out["zero_modes"] == fd_zero
    if pred is not None:
        assert pred == fd_zero
    if name == "vicreg":  # translations (d = 4) at least; rotations are no symmetry here
        assert fd_zero >= 4
