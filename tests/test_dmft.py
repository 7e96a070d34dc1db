import json

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import collapse_jax as cj
from collapse_jax.cli import main
from collapse_jax.dmft import solve_dmft
from collapse_jax.reduced import reduce_state, reduced_field, reduced_params


def _start(K=3, n=9, M=2, d=4):
    data = cj.standard_data(K, n, M)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k1, (data.n_samples, d))
    y = 2.0 * jax.random.normal(k2, (K, d))
    W = jnp.eye(d) + 0.1 * jax.random.normal(k3, (d, d))
    return reduce_state(x, y, W, K, n, data.shared_mask), reduced_params(data)


def test_self_consistent_solution_equals_direct_integration():
    z0, p = _start()
    res = solve_dmft(z0, p, t1=5.0, window=0.5)
    assert res.converged, res.message
    assert np.all(res.iterations >= 2) and np.all(res.changes <= 1e-10)
    direct = cj.simulate(
        reduced_field(stop_gradient=True),
        z0,
        p,
        ts=jnp.asarray(res.t[1:]),
        t1=5.0,
        solver=diffrax.Tsit5(),
        rtol=1e-12,
        atol=1e-12,
    )
    np.testing.assert_allclose(res.states.W[1:], direct.ys.W, atol=1e-6)
    ml = np.asarray(jax.vmap(cj.min_l2)(direct.ys.y))
    np.testing.assert_allclose(res.min_l2[1:], ml, atol=1e-6 * ml.max())


def test_whole_interval_iteration_reports_divergence():
    # MODEL.md §3: W -> infinity at the second iterate for K=3, n=9, M=2, d=4, T=50
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
    assert out["converged"] is True and out["max_abs_difference"] < 1e-6
    assert main(["dmft", "--model", "embedding"]) == 2
