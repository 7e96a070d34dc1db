import jax
import jax.numpy as jnp
import numpy as np
from helpers import min_l2_reference

import collapse_jax as cj


def _accuracy_reference(pred, y, per_class, n_shared):
    correct = 0
    for i, p in enumerate(np.asarray(pred)):
        dist = [np.linalg.norm(p - yk) for yk in np.asarray(y)]
        c = i // per_class
        if all(dist[c] < dist[k] for k in range(len(dist)) if k != c):
            correct += 1
    return correct / len(pred), correct / (len(pred) + n_shared)


def test_min_l2_and_distances_match_loops():
    y = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    np.testing.assert_allclose(float(cj.min_l2(y)), min_l2_reference(y), rtol=1e-14)
    D = np.asarray(cj.class_distances(y))
    np.testing.assert_allclose(D[1, 3], np.linalg.norm(np.asarray(y[1] - y[3])), rtol=1e-14)
    np.testing.assert_allclose(np.diag(D), 0.0)


def test_accuracy_matches_loop_and_counts_ties_wrong():
    key1, key2 = jax.random.split(jax.random.PRNGKey(4))
    y = jax.random.normal(key1, (3, 2))
    pred = jax.random.normal(key2, (12, 2))
    acc, acc_all = cj.nearest_label_accuracy(pred, y, 4, 3)
    ref, ref_all = _accuracy_reference(pred, y, 4, 3)
    assert float(acc) == ref and float(acc_all) == ref_all
    # a sample exactly between labels 0 and 1 is a tie: wrong
    y = jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 5.0]])
    pred = jnp.array([[0.0, 0.0], [-0.9, 0.0], [0.0, 4.0]])
    acc, _ = cj.nearest_label_accuracy(pred, y, 1)
    np.testing.assert_allclose(float(acc), 2 / 3)


def test_accuracy_not_reported_at_round_off_floor():
    y = jnp.array([[1.0, 2.0], [1.0, 2.0 + 1e-15]])
    acc, acc_all = cj.nearest_label_accuracy(jnp.ones((2, 2)), y, 1)
    assert np.isnan(float(acc)) and np.isnan(float(acc_all))


def test_fit_slow_rate_recovers_exponent_and_ignores_floor():
    ts = np.logspace(-2, 3, 200)
    values = 3.0 * np.exp(-0.37 * ts) + 2.0 * np.exp(-40.0 * ts)
    values = np.maximum(values, 1e-17)  # a round-off floor the fit must skip
    np.testing.assert_allclose(cj.fit_slow_rate(ts, values), -0.37, rtol=1e-6)
    assert abs(cj.fit_slow_rate(ts, np.full_like(ts, 0.8))) < 1e-12
