"""Collapse diagnostics (docs/theory.md §5) against plain numpy references and known cases."""

import jax
import numpy as np
import pytest
import scipy.linalg as sl
from helpers import embedding_hessian_reference

import collapse_jax as cj

# ----------------------------------------------------------------------------- numpy reference


def _reference(z, labels=None):
    """Every metric from np.linalg.svd / explicit loops, written from docs/theory.md §5."""
    z = np.asarray(z, dtype=np.float64)
    N, D = z.shape
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    s = np.concatenate([s, np.zeros(D - s.size)])
    p = s / s.sum()
    p = p[p > 0]
    lam = s**2
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    out = {
        "singular_values": s,
        "std_l2_normalized": np.mean(np.sqrt(np.mean((u - u.mean(0)) ** 2, axis=0))),
        "rankme": np.exp(-np.sum(p * np.log(p))),
        "participation_ratio": lam.sum() ** 2 / np.sum(lam**2),
        "n_components_95": next(
            k + 1 for k in range(D) if lam[: k + 1].sum() >= 0.95 * lam.sum() * (1 - 1e-12)
        ),
    }
    keep = lam > 0
    k = np.arange(1, D + 1)[keep]
    slope, icpt = np.polyfit(np.log(k), np.log(lam[keep]), 1)
    fit = icpt + slope * np.log(k)
    resid = np.sum((np.log(lam[keep]) - fit) ** 2)
    tot = np.sum((np.log(lam[keep]) - np.log(lam[keep]).mean()) ** 2)
    out["alpha_req"], out["alpha_req_r2"] = -slope, 1 - resid / tot
    if labels is not None:
        classes = sorted(set(int(c) for c in labels if c >= 0))
        K = len(classes)
        mus = np.array([z[labels == c].mean(0) for c in classes])
        out["min_l2_class_means"] = min(
            np.linalg.norm(mus[a] - mus[b]) for a in range(K) for b in range(K) if a != b
        )
        lab = labels >= 0
        sw = np.zeros((D, D))
        for i in np.flatnonzero(lab):
            dev = z[i] - mus[classes.index(labels[i])]
            sw += np.outer(dev, dev)
        sw /= lab.sum()
        mc = mus - mus.mean(0)
        sb = mc.T @ mc / K
        out["nc1"] = np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10, hermitian=True)) / K
        G = mc @ mc.T
        etf = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)
        out["nc2"] = np.linalg.norm(G / np.linalg.norm(G) - etf)
        correct = 0
        for i in np.flatnonzero(lab):
            d = [np.linalg.norm(z[i] - m) for m in mus]
            own = classes.index(labels[i])
            correct += all(d[own] < d[j] for j in range(K) if j != own)
        out["ncm_accuracy"] = correct / lab.sum()
    return out


# one shape for most tests: JAX compiles once per shape, and compile time is test time
N0, D0 = 60, 6


def _labelled_data(seed=0, N=N0, D=D0, K=3, shift=1.5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, N)
    centres = shift * rng.normal(size=(K, D))
    z = centres[labels] + rng.normal(size=(N, D)) * rng.uniform(0.3, 1.5, D) + 0.7
    return z, labels


def _orthonormal_centred(rng, N, r):
    """`N x r` orthonormal columns, each orthogonal to the ones vector (centred)."""
    A = np.concatenate([np.ones((N, 1)), rng.normal(size=(N, r))], axis=1)
    return np.linalg.qr(A)[0][:, 1:]


# ----------------------------------------------------------------------------- metrics


def test_every_metric_matches_numpy_reference():
    z, labels = _labelled_data()
    labels[:5] = -1  # unlabelled samples enter global metrics only
    out = cj.diagnose(z, labels)
    ref = _reference(z, labels)
    for key, value in ref.items():
        np.testing.assert_allclose(np.asarray(out[key]), value, rtol=1e-10, atol=1e-12, err_msg=key)
    assert out["singular_values"].dtype == np.float64
    np.testing.assert_allclose(out["class_counts"], np.bincount(labels[labels >= 0]))


def test_building_blocks_match_numpy_reference():
    z, labels = _labelled_data(seed=1)
    ref = _reference(z, labels)
    sv = cj.singular_values(z)
    np.testing.assert_allclose(sv, ref["singular_values"], rtol=1e-12)
    np.testing.assert_allclose(cj.std_l2_normalized(z), ref["std_l2_normalized"], rtol=1e-12)
    np.testing.assert_allclose(cj.rankme(sv), ref["rankme"], rtol=1e-12)
    lam = ref["singular_values"] ** 2
    q = lam / lam.sum()
    np.testing.assert_allclose(
        cj.rankme(sv, eigenvalues=True), np.exp(-np.sum(q * np.log(q))), rtol=1e-12
    )
    np.testing.assert_allclose(cj.participation_ratio(sv), ref["participation_ratio"], rtol=1e-12)
    assert int(cj.n_components(sv)) == ref["n_components_95"]
    np.testing.assert_allclose(cj.ncm_accuracy(z, labels, 3), ref["ncm_accuracy"], rtol=1e-14)


def test_alpha_req_recovers_power_law_and_fit_range():
    rng = np.random.default_rng(2)
    N, D, alpha = N0, D0, 1.3
    U = _orthonormal_centred(rng, N, D)
    V = np.linalg.qr(rng.normal(size=(D, D)))[0]
    k = np.arange(1, D + 1)
    lam = k**-alpha
    lam[3:] *= 0.1  # a kink: the full fit is imperfect, the first three ranks are exact
    z = (U * np.sqrt(lam)) @ V.T + 3.0
    a_full, r2_full = cj.alpha_req(cj.singular_values(z))
    slope = np.polyfit(np.log(k), np.log(lam), 1)[0]
    np.testing.assert_allclose(a_full, -slope, rtol=1e-9)
    assert r2_full < 0.99
    a, r2 = cj.alpha_req(cj.singular_values(z), fit_range=(1, 3))
    np.testing.assert_allclose(a, alpha, rtol=1e-9)
    np.testing.assert_allclose(r2, 1.0, atol=1e-12)
    out = cj.diagnose(z, fit_range=(1, 3))
    np.testing.assert_allclose(out["alpha_req"], alpha, rtol=1e-9)


def test_constant_input_is_fully_collapsed():
    z = np.full((N0, D0), 0.1)  # 0.1 is inexact: the centring leaves round-off, not zeros
    labels = np.repeat(np.arange(3), N0 // 3)
    out = cj.diagnose(z, labels)
    assert float(out["rankme"]) == 0.0 and float(out["participation_ratio"]) == 0.0
    assert int(out["n_components_95"]) == 0 and int(out["numerical_rank"]) == 0
    assert float(out["std_l2_normalized"]) < 1e-15
    assert bool(out["collapsed"])
    assert np.isinf(out["alpha_req"]) and np.isnan(out["alpha_req_r2"])  # documented
    assert float(out["min_l2_class_means"]) == 0.0
    assert np.isinf(out["nc1"]) and np.isnan(out["nc2"])  # documented: means coincide
    assert float(out["ncm_accuracy"]) == 0.0  # every distance ties: all wrong


def test_isotropic_gaussian_is_not_collapsed():
    N, D = 1000, D0
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (N, D)))
    out = cj.diagnose(z)
    np.testing.assert_allclose(out["std_l2_normalized"], 1 / np.sqrt(D), rtol=0.03)
    assert float(out["rankme"]) > 0.97 * D
    assert float(out["participation_ratio"]) > 0.9 * D
    assert int(out["n_components_95"]) == D
    assert not bool(out["collapsed"])


@pytest.mark.parametrize("r", [1, 3, 5])
def test_rank_r_equal_singular_values(r):
    rng = np.random.default_rng(r)
    N, D = N0, D0
    U = _orthonormal_centred(rng, N, r)
    V = np.linalg.qr(rng.normal(size=(D, D)))[0][:, :r]
    z = 2.5 * U @ V.T - 4.0  # centred by construction, then offset
    out = cj.diagnose(z)
    np.testing.assert_allclose(out["rankme"], r, rtol=1e-12)
    np.testing.assert_allclose(out["participation_ratio"], r, rtol=1e-12)
    assert int(out["numerical_rank"]) == r
    assert int(out["n_components_95"]) == r  # (r-1)/r < 95% <= r/r
    if r > 1:
        np.testing.assert_allclose(out["alpha_req"], 0.0, atol=1e-9)
        np.testing.assert_allclose(out["alpha_req_r2"], 1.0)
    np.testing.assert_allclose(out["singular_values"][:r], 2.5, rtol=1e-12)
    assert not bool(out["collapsed"])  # RankMe r >= 0.1 * min(D, N - 1) = 0.6


def test_complete_collapse_under_noise_is_caught_by_std():
    rng = np.random.default_rng(5)
    z = np.array([3.0, -1.0, 2.0, 0.5, 1.0, 1.5]) + 1e-6 * rng.normal(size=(N0, D0))
    out = cj.diagnose(z)
    assert float(out["rankme"]) > 5.0  # scale-free: the noise looks isotropic
    assert float(out["std_l2_normalized"]) < 1e-5
    assert bool(out["collapsed"])


def test_neural_collapse_simplex_etf():
    K, D, n = 3, D0, N0 // 3
    rng = np.random.default_rng(6)
    Q = np.linalg.qr(rng.normal(size=(D, D)))[0][:, :K]
    etf = (np.eye(K) - 1.0 / K) @ Q.T * 3.0  # simplex ETF, centred
    labels = np.repeat(np.arange(K), n)
    out = cj.diagnose(etf[labels] + 1.0, labels)
    np.testing.assert_allclose(out["nc2"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["nc1"], 0.0, atol=1e-20)
    assert float(out["ncm_accuracy"]) == 1.0
    np.testing.assert_allclose(out["min_l2_class_means"], 3.0 * np.sqrt(2), rtol=1e-12)
    # within-class noise raises NC1 as the reference says
    z = etf[labels] + 0.3 * rng.normal(size=(K * n, D))
    np.testing.assert_allclose(cj.diagnose(z, labels)["nc1"], _reference(z, labels)["nc1"])


# ----------------------------------------------------------------------------- degenerate


def test_dimension_one_has_documented_values():
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (100, 1)))
    out = cj.diagnose(z)
    assert float(out["rankme"]) == 1.0 and float(out["participation_ratio"]) == 1.0
    assert int(out["n_components_95"]) == 1
    assert np.isinf(out["alpha_req"]) and np.isnan(out["alpha_req_r2"])
    np.testing.assert_allclose(out["std_l2_normalized"], np.std(np.sign(z)), rtol=1e-12)
    assert not bool(out["collapsed"])
    assert bool(cj.diagnose(np.abs(z))["collapsed"])  # one sign: every u_i = +1


@pytest.mark.parametrize(
    "z, labels, error, fragment",
    [
        (np.ones((1, 4)), None, ValueError, "at least 2 samples, got 1"),
        (np.ones(4), None, ValueError, "must be 2-D"),
        (np.ones((0, 3)), None, ValueError, "non-empty"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), None, ValueError, "NaN or inf"),
        (np.ones((3, 2)), np.array([0, 1]), ValueError, "labels must have shape (3,)"),
        (np.ones((3, 2)), np.array([0.0, 1.0, 1.0]), TypeError, "labels must be integers"),
        (np.ones((3, 2)), np.array([1, 1, -1]), ValueError, "at least 2 classes"),
        (np.array([["a", "b"], ["c", "d"]]), None, TypeError, "real numbers"),
    ],
)
def test_bad_input_raises_clear_error(z, labels, error, fragment):
    with pytest.raises(error) as info:
        cj.diagnose(z, labels)
    assert fragment in str(info.value)


# ----------------------------------------------------------------------------- streaming


def _batches(z, labels, cuts):
    edges = [0, *cuts, len(z)]
    return [(z[a:b], labels[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def test_streaming_matches_one_shot():
    z, labels = _labelled_data(seed=8)
    labels[4:32] = np.where(labels[4:32] == 2, 0, labels[4:32])  # class 2 absent in batches
    one = cj.diagnose(z, labels, n_classes=3)
    batches = _batches(z, labels, [1, 4, 32])  # 1, 3 (< D), 28 and 28 rows
    stats = cj.stream_stats(batches, n_classes=3)
    out = cj.diagnostics_from_stats(stats)
    for key, value in out.items():
        np.testing.assert_allclose(value, one[key], rtol=1e-10, atol=1e-12, err_msg=key)
    # second pass for nearest-class-mean accuracy
    counts = [
        cj.ncm_counts(zb, lb, out["class_means"], out["class_counts"] > 0)
        for zb, lb in _batches(z, labels, [32])
    ]
    acc = sum(int(c) for c, _ in counts) / sum(int(t) for _, t in counts)
    np.testing.assert_allclose(acc, one["ncm_accuracy"], rtol=1e-14)


def test_streaming_qr_keeps_precision_where_gram_loses_it():
    """Offset 1e3 and a spectrum over seven decades (docs/theory.md §5: Gram loses ~1e-3)."""
    rng = np.random.default_rng(9)
    N, D = 400, 12
    U = _orthonormal_centred(rng, N, D)
    V = np.linalg.qr(rng.normal(size=(D, D)))[0]
    z = (U * np.logspace(0, -7, D)) @ V.T + 1e3
    s_ref = np.linalg.svd(z - z.mean(0), compute_uv=False)
    rankme_ref = float(cj.rankme(s_ref))
    stats = cj.stream_stats([z[a : a + 37] for a in range(0, N, 37)])
    out = cj.diagnostics_from_stats(stats, rtol=1e-13)
    np.testing.assert_allclose(out["rankme"], rankme_ref, rtol=1e-10)
    np.testing.assert_allclose(out["singular_values"][:6], s_ref[:6], rtol=1e-9)
    # the Gram accumulation (z^T z - N mu mu^T) on the same data
    mu = z.mean(0)
    ev = np.linalg.eigvalsh(z.T @ z - N * np.outer(mu, mu))[::-1]
    gram_rankme = float(cj.rankme(np.sqrt(np.clip(ev, 0.0, None))))
    assert abs(gram_rankme / rankme_ref - 1) > 1e-3


def test_streaming_rejects_bad_batches():
    with pytest.raises(ValueError, match="NaN or inf"):
        cj.stream_stats([np.ones((3, 2)), np.array([[np.inf, 1.0]])])
    with pytest.raises(ValueError, match="at least one batch"):
        cj.stream_stats([])


def test_merge_of_empty_summary_is_identity():
    z, labels = _labelled_data(seed=10)
    s = cj.embedding_stats(z, labels, n_classes=3)
    empty = jax.tree_util.tree_map(lambda a: a * 0, s)
    merged = cj.merge_stats(empty, s)
    for a, b in zip(merged, s, strict=True):
        np.testing.assert_allclose(np.abs(a), np.abs(b), atol=1e-13)


# ----------------------------------------------------------------------------- trajectory


def test_trajectory_shows_collapse_only_with_frustration():
    K, n, d = 3, 4, 5
    ts = cj.log_times(1e-2, 60.0, 12)
    finals = {}
    for M in (0, 2):
        data = cj.standard_data(K, n, M, max_shared=2)  # one shape: the diagnostics compile once
        state = cj.init_embedding_state(jax.random.PRNGKey(11), data.n_samples, K, d)
        # the trajectory from scipy's expm of J = -Hessian of L_E assembled in numpy
        J = -embedding_hessian_reference(data.matrix(), d)
        flat0 = np.concatenate([np.ravel(state.x), np.ravel(state.y)])
        flat = np.stack([sl.expm(J * t) @ flat0 for t in np.asarray(ts)])
        nx = data.n_samples * d
        ys = cj.EmbeddingState(
            flat[:, :nx].reshape(len(ts), data.n_samples, d), flat[:, nx:].reshape(len(ts), K, d)
        )
        out = cj.trajectory_diagnostics(ys, data)
        ml2 = np.asarray(out["min_l2_class_means"])
        # reference at one time: class means of the clean samples of x(t)
        x = np.asarray(ys.x[5])
        mus = x[: K * n].reshape(K, n, d).mean(1)
        ref = min(np.linalg.norm(mus[a] - mus[b]) for a in range(K) for b in range(K) if a != b)
        np.testing.assert_allclose(ml2[5], ref, rtol=1e-12)
        assert np.asarray(out["n_samples"])[0] == K * n + M
        ref_all = _reference(x[: K * n + M])  # active shared rows enter the global metrics
        np.testing.assert_allclose(out["rankme"][5], ref_all["rankme"], rtol=1e-10)
        finals[M] = (ml2, np.asarray(out["collapsed"]))
    ml2_0, collapsed_0 = finals[0]
    ml2_2, collapsed_2 = finals[2]
    assert ml2_0[-1] > 0.5 * ml2_0[0]  # M = 0: separation conserved
    M = 2
    lam_plus = 0.5 * (-(n + M + 1) + np.sqrt((n + M + 1) ** 2 - 4 * M))  # closed form
    slope = np.log(ml2_2[-1] / ml2_2[-2]) / float(ts[-1] - ts[-2])
    # M > 0: MinL2 ~ exp(lambda+ t); measured 1.6e-10 (expm round-off, late lambda- remnant)
    np.testing.assert_allclose(slope, lam_plus, rtol=2e-9)
    assert ml2_2[-1] < 1e-4 * ml2_2[0]
    assert not collapsed_0[-1] and collapsed_2[-1]
