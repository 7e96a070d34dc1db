import diffrax
import jax
import numpy as np
import pytest
from helpers import min_l2_reference

import collapse_jax as cj

# Tolerances that resolve MinL2 to 1e-7 relative down to 1e-6 of its start (see integrate.py).
STRICT = dict(rtol=1e-13, atol=1e-15)
TS = cj.log_times(1e-2, 1e3, 60)


def _run(K, n, M, d, seed=0, **kw):
    data = cj.standard_data(K, n, M)
    z0 = cj.init_embedding_state(jax.random.PRNGKey(seed), data.n_samples, K, d)
    sol = cj.simulate(cj.vector_field(cj.embedding_loss), z0, data.matrix(), ts=TS, **kw)
    return data, z0, sol


def test_log_times_stay_inside_interval():
    ts = cj.log_times(1e-2, 1e3, 100)
    assert float(ts[0]) == 1e-2 and float(ts[-1]) == 1e3
    assert np.all(np.diff(np.asarray(ts)) > 0)
    with pytest.raises(ValueError, match="t_max must be a number >= t_min=1.0, got 0.5"):
        cj.log_times(1.0, 0.5, 3)


def _min_l2_rel_errors(K, n, M, d, depths):
    """Max relative error of MinL2 wherever it is above ``depth`` times its start."""
    data, z0, sol = _run(K, n, M, d, **STRICT)
    assert sol.result == diffrax.RESULTS.successful
    exact = np.asarray(cj.exact_min_l2(z0, data, TS))
    numeric = np.array([min_l2_reference(y) for y in np.asarray(sol.ys.y)])
    errors = []
    for depth in depths:
        resolved = exact > depth * exact[0]
        assert resolved.sum() > 20
        errors.append(np.max(np.abs(numeric[resolved] / exact[resolved] - 1)))
    return errors


# The step-size controller bounds each step's error by rtol |y| with |y| = O(1) (the label
# positions), and at rtol = 1e-13 that is also float64 round-off (rtol = 1e-14 makes the
# controller thrash). MinL2 is a small difference of those positions, so its relative error
# grows as it falls. Tolerances are 10x the errors measured per case (at depth 1e-5 / 1e-6 of
# the start): (3,5,2,2) 2.2e-9 / 4.3e-9, (3,6,0,2) 6.5e-11 / 6.5e-11, (4,3,1,2) 3.0e-8 /
# 1.9e-7, (2,1,1,1) 1.0e-8 / 4.7e-7.
@pytest.mark.parametrize(
    "K,n,M,d,tol_5,tol_6",
    [
        (3, 5, 2, 2, 2e-8, 5e-8),
        (3, 6, 0, 2, 7e-10, 7e-10),
        (4, 3, 1, 2, 3e-7, 2e-6),
        (2, 1, 1, 1, 1e-7, 5e-6),
    ],
)
def test_diffrax_matches_exact_sector_solution(K, n, M, d, tol_5, tol_6):
    err_5, err_6 = _min_l2_rel_errors(K, n, M, d, [1e-5, 1e-6])
    assert err_5 < tol_5
    assert err_6 < tol_6


def test_late_slope_is_lambda_plus_and_frustration_free_run_keeps_separation():
    K, n, d = 3, 5, 2
    for M in (2, 0):
        data, z0, sol = _run(K, n, M, d)
        ml = np.asarray(jax.vmap(cj.min_l2)(sol.ys.y))
        lp = 0.5 * (-(n + M + 1) + np.sqrt((n + M + 1) ** 2 - 4 * M))  # closed form
        if M > 0:
            # fit on the integrated path at default tolerances: measured 8.5e-8
            np.testing.assert_allclose(cj.fit_slow_rate(TS, ml), lp, rtol=1e-6)
        else:
            assert lp == 0.0
            late = ml[TS > 100]
            assert ml[-1] > 0.1 * ml[0]  # finite separation
            assert np.ptp(late) < 1e-8 * late[-1]  # a constant at late times


def test_vmap_over_frustration_masks_equals_python_loop():
    K, n, d = 3, 3, 2
    phis = np.array([0.0, 0.2, 0.4])
    batch = cj.frustration_data(K, n, phis, max_shared=6)
    z0 = cj.init_embedding_state(jax.random.PRNGKey(5), batch.n_samples, K, d)
    f = cj.vector_field(cj.embedding_loss)
    ts = cj.log_times(1e-2, 50.0, 20)

    def single(data):
        sol = cj.simulate(f, z0, data.matrix(), ts=ts, rtol=1e-10, atol=1e-12)
        return jax.vmap(cj.min_l2)(sol.ys.y), sol.result

    batched, results = jax.jit(jax.vmap(single))(batch)
    for i, phi in enumerate(phis):
        data = cj.frustration_data(K, n, phi, max_shared=6)
        looped, result = single(data)
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(looped), rtol=1e-10)
        assert result == diffrax.RESULTS.successful
    assert np.all(np.asarray(results._value) == 0)


def test_failing_member_is_reported_and_does_not_sink_the_batch():
    K, n, d = 2, 2, 1
    batch = cj.frustration_data(K, n, np.array([0.0, 0.6]), max_shared=6)
    z0 = cj.init_embedding_state(jax.random.PRNGKey(0), batch.n_samples, K, d)
    f = cj.vector_field(cj.embedding_loss)
    ts = cj.log_times(1e-2, 5.0, 5)

    def single(data):  # an explicit solver with too few steps for the stiffer member
        sol = cj.simulate(
            f,
            z0,
            data.matrix(),
            ts=ts,
            solver=diffrax.Tsit5(),
            rtol=1e-10,
            atol=1e-12,
            max_steps=200,
        )  # needs 139 and 228
        return sol.ys.y, sol.result

    ys, results = jax.vmap(single)(batch)
    codes = np.asarray(results._value)
    assert codes[0] == diffrax.RESULTS.successful._value
    assert codes[1] == diffrax.RESULTS.max_steps_reached._value
    exact = cj.exact_solution(z0, jax.tree.map(lambda a: a[0], batch), ts)
    np.testing.assert_allclose(np.asarray(ys[0]), np.asarray(exact.y), rtol=1e-7, atol=1e-9)
