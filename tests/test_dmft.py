"""The self-consistent (windowed Picard) solver against direct integration of an independent
numpy field, and the fixed-point residual of the map it iterates (the map is written out in
docs/dmft.md), evaluated with scipy on the converged answer."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import collapse_jax as cj
from collapse_jax._dmft import solve_dmft
from collapse_jax._reduced import reduce_state, reduced_params
from collapse_jax.cli import main

K, N, M, D = 3, 9, 2, 4  # classes, samples per class, shared samples (weight 1), dimension


def _start():
    data = cj.standard_data(K, N, M)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k1, (data.n_samples, D))
    y = 2.0 * jax.random.normal(k2, (K, D))
    W = jnp.eye(D) + 0.1 * jax.random.normal(k3, (D, D))
    return reduce_state(x, y, W, K, N, data.shared_mask), reduced_params(data)


# --- the stop-gradient order-parameter equations, written out in numpy ---------------------
# Loss 1/2 sum_i sum_c A_ic [|W x_i - sg(y_c)|^2 + |y_c - sg(x_i)|^2], G = W^T W:
#   dxbar_c/dt = -G xbar_c + W^T y_c,   dxbar_S/dt = -K (G xbar_S - W^T ybar),
#   dy_c/dt = -(n+M) y_c + n xbar_c + M xbar_S,
#   dC/dt = -(G C + C G),   dC_S/dt = -K (G C_S + C_S G),
#   dW/dt = -W S + B,  S = n (C + sum_c xbar_c xbar_c^T) + K M (C_S + xbar_S xbar_S^T),
#                      B = n sum_c y_c xbar_c^T + K M ybar xbar_S^T.
_SIZES = [("xbar", (K, D)), ("xs", (D,)), ("y", (K, D)), ("C", (D, D)), ("CS", (D, D))]


def _unpack(v):
    out, i = {}, 0
    for name, shape in _SIZES:
        k = int(np.prod(shape))
        out[name] = v[i : i + k].reshape(shape)
        i += k
    return out


def _pack(u):
    return np.concatenate([np.ravel(np.asarray(u[name])) for name, _ in _SIZES])


def _u_rate(u, W):
    xb, xs, y, C, CS = (u[name] for name, _ in _SIZES)
    G = W.T @ W
    return {
        "xbar": -xb @ G + y @ W,
        "xs": -K * (G @ xs - W.T @ y.mean(0)),
        "y": -(N + M) * y + N * xb + M * xs,
        "C": -(G @ C + C @ G),
        "CS": -K * (G @ CS + CS @ G),
    }


def _w_rate(u, W):
    xb, xs, y, C, CS = (u[name] for name, _ in _SIZES)
    S = N * (C + xb.T @ xb) + K * M * (CS + np.outer(xs, xs))
    B = N * y.T @ xb + K * M * np.outer(y.mean(0), xs)
    return -W @ S + B


def _full_rate(t, v):
    u, W = _unpack(v[: -D * D]), v[-D * D :].reshape(D, D)
    return np.concatenate([_pack(_u_rate(u, W)), np.ravel(_w_rate(u, W))])


def _u_of(z, i):
    return {name: np.asarray(getattr(z, name))[i] for name, _ in _SIZES}


def _direct(z0, t_end):
    """Direct integration of the whole field: scipy DOP853 on the numpy field above."""
    v0 = np.concatenate([_pack({k: np.asarray(getattr(z0, k)) for k, _ in _SIZES}),
                         np.ravel(np.asarray(z0.W))])  # fmt: skip
    sol = solve_ivp(_full_rate, (0.0, t_end), v0, method="DOP853", rtol=1e-13, atol=1e-14,
                    dense_output=True)  # fmt: skip
    assert sol.status == 0
    return sol.sol


def _check_against_direct(res, z0):
    sol = _direct(z0, float(res.t[-1]))
    W_ref = np.stack([sol(t)[-D * D :].reshape(D, D) for t in res.t])
    y_ref = np.stack([_unpack(sol(t))["y"] for t in res.t])
    ml_ref = np.array([min(np.linalg.norm(y[a] - y[b]) for a in range(K) for b in range(a))
                       for y in y_ref])  # fmt: skip
    return np.max(np.abs(res.states.W - W_ref)), np.max(np.abs(res.min_l2 - ml_ref))


def test_self_consistent_solution_equals_direct_integration():
    z0, p = _start()
    res = solve_dmft(z0, p, t1=5.0, window=0.5)
    assert res.converged, res.message
    assert np.all(res.iterations >= 2) and np.all(res.changes <= 1e-10)
    err_w, err_ml = _check_against_direct(res, z0)
    assert err_w < 2e-10  # measured 2.0e-11
    assert err_ml < 1e-10  # measured 6.2e-12


_evaluate = eqx.filter_jit(lambda sol, t: sol.evaluate(t))


def _map_residual(res, i, n_check=8):
    """One application of the iterated map on window i, by scipy on the numpy equations:
    propagate u = (xbar, xbar_S, y, C, C_S) from the converged state at the window start with
    the converged W(t) fixed, then solve the linear W equation given that u(t); return
    max |W_new - W| at n_check points of the window."""
    a, b = float(res.t[i]), float(res.t[i + 1])
    w_old = res.w_dense[i]

    def W_at(t):
        return np.asarray(_evaluate(w_old, jnp.asarray(t)))

    u_sol = solve_ivp(lambda t, v: _pack(_u_rate(_unpack(v), W_at(t))), (a, b),
                      _pack(_u_of(res.states, i)), method="DOP853", rtol=1e-13, atol=1e-14,
                      dense_output=True).sol  # fmt: skip
    check = a + (b - a) * np.arange(1, n_check + 1) / n_check
    w_new = solve_ivp(lambda t, v: np.ravel(_w_rate(_unpack(u_sol(t)), v.reshape(D, D))), (a, b),
                      np.ravel(res.states.W[i]), method="DOP853", rtol=1e-13, atol=1e-14,
                      t_eval=check)  # fmt: skip
    return max(np.max(np.abs(w_new.y[:, j].reshape(D, D) - W_at(t))) for j, t in enumerate(check))


@pytest.mark.slow
def test_self_consistent_solution_at_t50():
    """T = 50 (window 0.5): the converged W(t) is a fixed point of the map (residual
    re-evaluated by scipy on every window) and equals direct integration."""
    z0, p = _start()
    res = solve_dmft(z0, p, t1=50.0, window=0.5, max_steps=512, keep_dense=True)
    assert res.converged, res.message
    assert len(res.t) == 101 and np.all(res.changes <= 1e-10)
    residual = max(_map_residual(res, i) for i in range(len(res.t) - 1))
    err_w, err_ml = _check_against_direct(res, z0)
    assert residual < 5e-10  # measured 4.7e-11 (the windows stop at a change <= 1e-10)
    assert err_w < 1e-9  # measured 1.0e-10
    assert err_ml < 2e-9  # measured 1.7e-10


def test_whole_interval_iteration_reports_divergence():
    # W -> infinity at the second iterate for K=3, n=9, M=2, d=4, T=50
    z0, p = _start()
    res = solve_dmft(z0, p, t1=50.0, window=50.0)
    assert not res.converged
    assert "window [0, 50]" in res.message and "try a shorter window" in res.message
    assert len(res.t) == 1  # nothing past the failed window is reported


def test_dmft_cli_json(capsys):
    code = main(
        [
            "dmft",
            "--json",
            "--stop-gradient",
            "--classes",
            "2",
            "--per-class",
            "3",
            "--shared",
            "1",
            "--dim",
            "3",
            "--t1",
            "2",
            "--window",
            "0.5",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in ("max_abs_difference", "iterations", "converged", "seconds"):
        assert key in out
    # the command's own comparison with direct integration (Tsit5 at rtol 1e-12): 6.0e-11
    assert out["converged"] is True and out["max_abs_difference"] < 6e-10
    assert main(["dmft", "--model", "embedding"]) == 2


@pytest.mark.slow
def test_dmft_converges_at_the_sub_solves_accuracy(capsys):
    """A held-out start with default flags: window [44, 45] stalls at a change of 1.58e-10,
    the sub-solves' own accuracy (rtol 1e-10 |W| + atol), just above the fixed tol 1e-10; it
    counts as converged, and the answer agrees with direct integration to 1.9e-10."""
    argv = (
        "dmft --model projection --stop-gradient --classes 3 --per-class 9 --shared 2 "
        "--dim 4 --seed 4"
    )
    assert main([*argv.split(), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["converged"] is True, out["message"]
    assert out["windows"] == 50 and out["message"] == ""
    assert max(out["iterations_per_window"]) <= 12  # no window runs to --max-iter 50
    assert out["max_abs_difference"] < 3e-10
