import jax
import numpy as np
import pytest

import collapse_jax as cj


@pytest.mark.parametrize(
    "K,n,M,d,max_shared",
    [
        (2, 1, 0, 1, None),
        (2, 1, 1, 1, None),
        (3, 4, 0, 2, None),
        (3, 4, 1, 2, None),
        (4, 3, 3, 2, 5),
        (3, 5, 2, 3, None),
    ],
)
def test_spectrum_matches_closed_form_sector_by_sector(K, n, M, d, max_shared):
    data = cj.standard_data(K, n, M, max_shared=max_shared)
    z = cj.init_embedding_state(jax.random.PRNGKey(K + n + M), data.n_samples, K, d)
    report = cj.embedding_spectrum_report(cj.vector_field(cj.embedding_loss), z, data)
    assert report["max_abs_error"] < 1e-9
    assert report["sector_leakage"] < 1e-9  # sectors are invariant subspaces of J
    assert report["symmetric"] and report["asymmetry_norm"] < 1e-12
    for name, sector in report["sectors"].items():
        np.testing.assert_allclose(sector["numeric"], sector["predicted"], atol=1e-9, err_msg=name)
    assert len(report["numeric"]) == (data.n_samples + K) * d
    assert np.max(np.abs(report["numeric_imag"])) == 0.0


def test_sector_bases_are_orthonormal_and_complete():
    data = cj.standard_data(3, 4, 2, max_shared=4)
    Q = np.concatenate(list(cj.sector_basis(data).values()), axis=1)
    np.testing.assert_allclose(Q.T @ Q, np.eye(Q.shape[1]), atol=1e-13)
    assert Q.shape == (data.n_samples + 3, data.n_samples + 3)


def test_eigenvalues_of_non_symmetric_matrix_on_host():
    J = np.array([[0.0, 1.0], [-1.0, 0.0]])  # rotation: +-i
    ev = cj.eigenvalues(J)
    np.testing.assert_allclose(ev, [-1j, 1j], atol=1e-15)
    assert cj.asymmetry_norm(J) == pytest.approx(np.sqrt(8.0))  # |[[0,2],[-2,0]]|_F
