"""The network model: data, the row's field against numpy references, training, the study.

References are independent of the package: numpy forward passes and loss sums, central finite
differences, a Python loop of separately jitted trainings, a fresh process on two devices.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import projection_field_reference, run_on_two_devices

import collapse_jax as cj

RNG = np.random.default_rng(0)


def _toy(n=30, D=5, K=3, test_fraction=0.2, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % K
    X = rng.normal(size=(n, D)) + labels[:, None]
    return cj.network_data(X, labels, test_fraction=test_fraction)


# --- data ------------------------------------------------------------------------------------


def test_digits_split_is_stratified_and_standardised():
    d = cj.digits_data()
    assert d.n_classes == 10 and d.n_inputs == 64
    assert d.n_samples + d.X_test.shape[0] == 1797
    counts_test = np.bincount(np.asarray(d.labels_test), minlength=10)
    # 20% of every class, rounded: the classes have 174..183 images
    assert np.all(np.abs(counts_test - 0.2 * (d.class_counts + counts_test)) <= 0.5 + 1e-9)
    X = np.asarray(d.X)
    std = X.std(axis=0)
    varying = std > 0
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-14)  # measured 1.1e-15
    np.testing.assert_allclose(std[varying], 1, rtol=3e-13)  # measured 3.1e-14
    balanced = cj.digits_data(balance=True)
    assert len(set(balanced.class_counts.tolist())) == 1


def test_frustration_is_nested_and_counted():
    d = _toy(n=200)
    key = jax.random.PRNGKey(3)
    masks = [np.asarray(cj.with_frustration(d, key, phi).shared) for phi in (0.0, 0.05, 0.1, 0.3)]
    for phi, m in zip((0.0, 0.05, 0.1, 0.3), masks, strict=True):
        assert m.sum() == round(phi * d.n_samples)
    for small, large in zip(masks[:-1], masks[1:], strict=False):
        assert np.all(large[small])  # every sample shared at a ratio is shared at larger ones
    A = np.asarray(cj.network_alignment(cj.with_frustration(d, key, 0.3), normalise=False))
    labels = np.asarray(d.labels)
    for i in range(d.n_samples):
        want = np.ones(3) if masks[-1][i] else np.eye(3)[labels[i]]
        np.testing.assert_array_equal(A[i], want)


@pytest.mark.parametrize(
    "X, labels, match",
    [
        (np.ones((4, 2)), np.array([0, 1, 0]), "labels must be a 1-d array"),
        (np.array([[0.0, np.nan], [1, 1], [2, 2], [3, 3]]), np.array([0, 0, 1, 1]), "finite"),
        (np.ones((4, 2)), np.array([0, 0, 0, 0]), "at least two classes"),
        (np.ones((4, 2)), np.array([0, 0, 0, 1]), "at least two samples"),
        (np.ones(4), np.array([0, 0, 1, 1]), "2-d"),
        (np.ones((4, 2)), np.array([0.5, 0, 1, 1]), "integers"),
    ],
)
def test_bad_arrays_are_named(X, labels, match):
    with pytest.raises(ValueError, match=match):
        cj.network_data(X, labels)


def test_npz_files(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, X=RNG.normal(size=(20, 3)), labels=np.arange(20) % 2)
    assert cj.load_network_npz(good).n_classes == 2
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=np.ones((4, 2)))
    with pytest.raises(ValueError, match="missing \\['labels'\\]"):
        cj.load_network_npz(bad)
    with pytest.raises(ValueError, match="does not exist"):
        cj.load_network_npz(tmp_path / "none.npz")
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        cj.load_network_npz(junk)


# --- the row's loss and field against numpy ----------------------------------------------------


def _numpy_forward(enc, X):
    h = np.asarray(X)
    for i, (W, b) in enumerate(zip(enc.weights, enc.biases, strict=True)):
        h = h @ np.asarray(W).T + np.asarray(b)
        if i < len(enc.weights) - 1:
            h = np.tanh(h)
    return h


def _numpy_loss(x_live, x_held, state, held, A, projection):
    """`L_E` or `L_P(z, h)` summed pair by pair (held slot: `y` in the predictor term, `x` in
    the direct term)."""
    total = 0.0
    for i in range(A.shape[0]):
        for c in range(A.shape[1]):
            if projection:
                W = np.asarray(state.W)
                e = W @ x_live[i] - np.asarray(held.y)[c]
                total += 0.5 * A[i, c] * (e @ e)
                f = np.asarray(state.y)[c] - x_held[i]
                total += 0.5 * A[i, c] * (f @ f)
            else:
                e = x_live[i] - np.asarray(state.y)[c]
                total += 0.5 * A[i, c] * (e @ e)
    return total


@pytest.fixture(scope="module")
def toy_state():
    data = cj.with_frustration(_toy(n=12, D=4, K=3, test_fraction=0.0), jax.random.PRNGKey(1), 0.25)
    return data


@pytest.mark.parametrize("variant", ["plain", "projection", "stop-gradient"])
def test_row_field_matches_numpy(toy_state, variant):
    """The row's field on every array (encoder, labels, projection) equals minus the numpy
    gradient: labels and projection from the pair-loop reference, the encoder by central
    differences of the numpy loss (live slot only for stop-gradient)."""
    data = toy_state
    row = cj.network_row(variant)
    state = cj.network_start(variant, jax.random.PRNGKey(0), data, 3, width=5)
    args = row.data_args(data)
    A = np.asarray(args.mech.A)
    F = row.field()(0.0, state, args)
    x = _numpy_forward(state.x, data.X)
    projection = variant != "plain"
    if projection:
        dx, dy, dW = projection_field_reference(x, state.y, state.W, A, row.stop_gradient)
        np.testing.assert_allclose(F.W, dW, rtol=4e-15, atol=2e-15)  # measured 4.0e-16 relative
    else:
        dy = -np.einsum("ic,icd->cd", A, np.asarray(state.y)[None] - x[:, None])
    np.testing.assert_allclose(F.y, dy, rtol=4e-15, atol=4e-15)  # measured 3.1e-16 relative
    # the encoder: central differences of the numpy loss in the live slot
    h = 1e-6
    leaves, treedef = jax.tree.flatten(state.x)
    got = jax.tree.leaves(F.x)
    worst = 0.0
    scale = max(float(np.max(np.abs(np.asarray(g)))) for g in got)
    for k, leaf in enumerate(leaves):
        arr = np.asarray(leaf)
        for idx in list(np.ndindex(arr.shape))[:6]:
            vals = []
            for sign in (1, -1):
                moved = arr.copy()
                moved[idx] += sign * h
                enc = jax.tree.unflatten(
                    treedef, [*leaves[:k], jnp.asarray(moved), *leaves[k + 1 :]]
                )
                live = state._replace(x=enc)
                held = state if row.stop_gradient else live
                x_live = _numpy_forward(enc, data.X)
                x_held = x if row.stop_gradient else x_live
                vals.append(_numpy_loss(x_live, x_held, live, held, A, projection))
            fd = -(vals[0] - vals[1]) / (2 * h)
            worst = max(worst, abs(float(np.asarray(got[k])[idx]) - fd) / scale)
    # relative to the largest encoder force; measured 2.2e-10 (plain), 4.5e-10 (projection),
    # 1.2e-9 (stop-gradient): central differences with h = 1e-6
    assert worst < 1.2e-8


def test_recorded_accuracy_matches_a_numpy_loop(toy_state):
    data = cj.with_frustration(_toy(n=60, D=4, K=3), jax.random.PRNGKey(2), 0.1)
    row = cj.network_row("projection")
    state = cj.network_start("projection", jax.random.PRNGKey(5), data, 3, width=5)
    m = jax.jit(lambda s: row.metrics(row, s, data, row.data_args(data)))(state)
    W, y = np.asarray(state.W), np.asarray(state.y)

    def accuracy(X, labels, keep):
        pred = _numpy_forward(state.x, X) @ W.T
        right = [np.argmin(((p - y) ** 2).sum(1)) == c for p, c in zip(pred, labels, strict=True)]
        return np.mean(np.asarray(right)[keep])

    clean = ~np.asarray(data.shared)
    assert float(m["accuracy"]) == pytest.approx(accuracy(data.X, data.labels, clean), abs=1e-15)
    test_all = np.ones(data.X_test.shape[0], bool)
    want = accuracy(data.X_test, data.labels_test, test_all)
    assert float(m["accuracy_test"]) == pytest.approx(want, abs=1e-15)
    dists = [np.linalg.norm(y[a] - y[b]) for a in range(3) for b in range(a)]
    assert float(m["min_l2"]) == pytest.approx(min(dists), rel=1e-13)


# --- training ---------------------------------------------------------------------------------

SMALL = cj.NetworkConfig(steps=40, dim=3, width=6, points=8, late=5)


def test_full_batch_sgd_matches_a_numpy_descent():
    """Plain SGD on the network row equals gradient descent written with numpy forward passes
    and central-difference gradients of the numpy loss (5 steps; the differences' error)."""
    data = cj.with_frustration(_toy(n=12, D=4, K=3, test_fraction=0.0), jax.random.PRNGKey(0), 0.2)
    config = SMALL._replace(steps=5, points=2, late=2)
    member = cj.network_member(data, config)
    key = jax.random.PRNGKey(7)
    got = jax.jit(member)(jnp.asarray(0.2), key, jnp.asarray(0.3))
    # numpy: the same start, A and steps
    d = cj.with_frustration(data, jax.random.fold_in(key, 1), 0.2)
    state = cj.network_start("plain", key, d, 3, width=6)
    A = np.asarray(cj.network_alignment(d))
    leaves, treedef = jax.tree.flatten(state)
    flat = [np.asarray(a).copy() for a in leaves]

    def loss(arrs):
        s = jax.tree.unflatten(treedef, [jnp.asarray(a) for a in arrs])
        return _numpy_loss(_numpy_forward(s.x, d.X), None, s, s, A, False)

    h = 1e-6
    for _ in range(5):
        grads = []
        for k, a in enumerate(flat):
            g = np.zeros_like(a)
            for idx in np.ndindex(a.shape):
                up = [b.copy() for b in flat]
                up[k][idx] += h
                dn = [b.copy() for b in flat]
                dn[k][idx] -= h
                g[idx] = (loss(up) - loss(dn)) / (2 * h)
            grads.append(g)
        flat = [a - 0.3 * g for a, g in zip(flat, grads, strict=True)]
    final = jax.tree.unflatten(treedef, [jnp.asarray(a) for a in flat])
    want = _numpy_loss(_numpy_forward(final.x, d.X), None, final, final, A, False)
    # measured 6.4e-11: the central differences' error, carried through five steps
    assert float(got["loss"][-1]) == pytest.approx(want, rel=6e-10)


def test_save_steps_equal_save_every():
    """``train`` with explicit record steps gives the states of the fixed-interval path."""
    import optax

    row = cj.get_model("mse")
    data = cj.standard_data(3, 4, 1)
    z0 = row.start(jax.random.PRNGKey(0), data, 2)
    args = row.data_args(data)
    _, a = cj.train(row.loss, z0, args, optax.sgd(0.01), steps=20, save_every=5)
    _, b = cj.train(row.loss, z0, args, optax.sgd(0.01), steps=20, save_steps=[0, 5, 10, 15, 20])
    np.testing.assert_array_equal(b.x, a.x)  # measured: identical
    with pytest.raises(ValueError, match="save_steps"):
        cj.train(row.loss, z0, args, optax.sgd(0.01), steps=20, save_steps=[0, 5, 5, 20])


@pytest.fixture(scope="module")
def small_sweep():
    data = _toy(n=40, D=4, K=3)
    sweep = cj.network_sweep(data, [0.0, 0.1], [0, 1], lr=[0.05, 0.2], config=SMALL)
    return data, sweep


def test_vmapped_study_equals_a_python_loop(small_sweep):
    """Every member of the vmapped study equals the same training run alone: one jitted member
    called in a Python loop (one compile), and one member through ``network_run``."""
    data, sweep = small_sweep
    one = jax.jit(cj.network_member(data, SMALL))
    for i, phi in enumerate(sweep.frustration):
        for j, seed in enumerate(sweep.seed):
            for k, lr in enumerate(sweep.lr):
                rec = one(jnp.asarray(phi), jax.random.PRNGKey(int(seed)), jnp.asarray(lr))
                for name in cj.RECORDED:
                    np.testing.assert_allclose(
                        sweep.records[name][i, j, k], rec[name], rtol=2e-13, atol=1e-14
                    )  # measured: at most 2.3e-14 relative
    run = cj.network_run(data, frustration=0.1, seed=1, lr=0.2, config=SMALL)
    for name in cj.RECORDED:
        np.testing.assert_allclose(sweep.records[name][1, 1, 1], run[name], rtol=2e-13, atol=1e-14)
    assert sweep.summary["peak_step"][1, 1, 1] == run["peak_step"]


TWO_DEVICES = """
import sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
sys.path.insert(0, sys.argv[1])
import collapse_jax as cj
from test_network import SMALL, _toy
s = cj.network_sweep(_toy(n=40, D=4, K=3), [0.0, 0.1], [0, 1], lr=[0.05, 0.2], config=SMALL)
np.savez(sys.argv[2], n_devices=s.metadata["n_devices"], **s.records)
"""


@pytest.mark.slow
def test_sharded_study_equals_unsharded(small_sweep, tmp_path):
    _, sweep = small_sweep
    path = tmp_path / "two.npz"
    run_on_two_devices(TWO_DEVICES, path)
    with np.load(path) as got:
        assert int(got["n_devices"]) == 2
        for name in cj.RECORDED:
            # measured: at most 5.9e-16 relative
            np.testing.assert_allclose(got[name], sweep.records[name], rtol=6e-15, atol=1e-15)


# --- summaries --------------------------------------------------------------------------------


def test_late_decay_fits_recover_known_curves():
    step = np.linspace(0, 1000, 101)
    exp = cj.fit_late_decay(step, 2.0 * np.exp(-3e-3 * step))
    assert exp["slow_rate_fit"] == pytest.approx(-3e-3, rel=1e-13)  # measured 0
    assert exp["better_fit"] == "exponential"
    power = cj.fit_late_decay(step, 5.0 * np.maximum(step, 1) ** -1.5)
    assert power["power_law_exponent"] == pytest.approx(-1.5, rel=1e-12)  # measured 9.1e-14
    assert power["better_fit"] == "power law"
    assert cj.fit_late_decay(step[:3], step[:3])["better_fit"] == "none"


def test_summary_of_a_known_curve():
    step = np.array([0, 10, 20, 30, 40, 50])
    acc = np.array([0.1, 0.8, 0.9, 0.85, 0.79, 0.7])
    m = np.array([1.0, 0.9, 0.5, 0.2, 0.1, 0.05])
    s = cj.network_summary(step, acc, m)
    assert s["peak_accuracy"] == 0.9 and s["peak_step"] == 20
    assert s["collapse_step"] == 40  # 0.79 <= 0.9 - 0.1
    assert s["final_accuracy"] == 0.7 and s["accuracy_drop"] == pytest.approx(0.2)
    assert s["min_l2_at_peak"] == 0.5 and s["final_min_l2"] == 0.05
    assert np.isnan(cj.network_summary(step, np.full(6, 0.5), m)["collapse_step"])
