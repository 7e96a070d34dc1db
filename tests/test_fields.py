import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import embedding_field_reference

import collapse_jax as cj


def _setup(K, n, M, d, seed=0, max_shared=None):
    data = cj.standard_data(K, n, M, max_shared=max_shared)
    z = cj.init_embedding_state(jax.random.PRNGKey(seed), data.n_samples, K, d)
    return data, z


@pytest.mark.parametrize("K,n,M,d", [(2, 1, 0, 1), (3, 4, 2, 3), (4, 3, 1, 2)])
def test_pair_sum_never_needs_the_pair_tensor(K, n, M, d):
    data, z = _setup(K, n, M, d)
    A = data.matrix()
    direct = jnp.sum(A[:, :, None] * (z.x[:, None, :] - z.y[None, :, :]) ** 2)
    np.testing.assert_allclose(float(cj.pair_sum(A, z.x, z.y)), float(direct), rtol=1e-13)


@pytest.mark.parametrize("K,n,M,d", [(2, 1, 0, 1), (3, 4, 2, 3), (4, 3, 1, 2)])
def test_conservative_field_is_minus_gradient(K, n, M, d):
    data, z = _setup(K, n, M, d, max_shared=M + 1)
    A = data.matrix()
    F = cj.vector_field(cj.embedding_loss)(0.0, z, A)
    dx, dy = embedding_field_reference(z.x, z.y, A)
    np.testing.assert_allclose(np.asarray(F.x), dx, atol=1e-12)
    np.testing.assert_allclose(np.asarray(F.y), dy, atol=1e-12)
    # and -grad of the training loss (same function, both slots live)
    g = jax.grad(cj.training_loss(cj.embedding_loss))(z, A)
    np.testing.assert_allclose(np.asarray(g.x), -dx, atol=1e-12)


def test_conservative_jacobian_symmetric_and_matches_finite_differences():
    data, z = _setup(3, 3, 2, 2)
    f = cj.vector_field(cj.embedding_loss)
    J = cj.jacobian(f, z, data.matrix())
    J_fd = cj.finite_difference_jacobian(f, z, data.matrix())
    assert cj.asymmetry_norm(J) <= 1e-13 * np.linalg.norm(J)
    np.testing.assert_allclose(J, J_fd, atol=1e-6 * np.abs(J).max())
    assert np.max(np.linalg.eigvalsh(J)) < 1e-12  # minus a PSD Hessian


def test_stop_gradient_flag_on_a_loss_without_held_slot_changes_nothing():
    # The embedding loss holds nothing fixed, so both fields agree in value and Jacobian.
    data, z = _setup(3, 2, 1, 2)
    A = data.matrix()
    f = cj.vector_field(cj.embedding_loss)
    g = cj.vector_field(cj.embedding_loss, stop_gradient=True)
    np.testing.assert_allclose(np.asarray(f(0, z, A).y), np.asarray(g(0, z, A).y), atol=1e-14)
    np.testing.assert_allclose(cj.jacobian(f, z, A), cj.jacobian(g, z, A), atol=1e-14)


def test_held_slot_field_has_the_right_jacobian_where_stop_gradient_does_not():
    """docs/theory.md §3 trap, on a toy loss: L(z, h) = 1/2 |z - 2 h|^2 with h held."""

    def toy(z, h, args):
        return 0.5 * jnp.sum((z - 2.0 * h) ** 2)

    z = jnp.array([0.3, -1.2])
    field = cj.vector_field(toy, stop_gradient=True)
    # value: F = -(z - 2 h)|_{h=z} = z ; true Jacobian = +I
    np.testing.assert_allclose(np.asarray(field(0, z, None)), np.asarray(z), atol=1e-15)
    J = np.asarray(jax.jacfwd(lambda v: field(0, v, None))(z))
    np.testing.assert_allclose(J, np.eye(2), atol=1e-15)
    np.testing.assert_allclose(J, cj.finite_difference_jacobian(field, z, None), atol=1e-8)
    naive = jax.jacfwd(lambda v: -jax.grad(cj.training_loss(toy, stop_gradient=True))(v, None))
    np.testing.assert_allclose(np.asarray(naive(z)), -np.eye(2), atol=1e-15)  # wrong sign


def test_jit_and_eager_agree():
    data, z = _setup(3, 3, 1, 2)
    A = data.matrix()
    f = cj.vector_field(cj.embedding_loss)
    with jax.disable_jit():
        eager = f(0.0, z, A)
        eager_exact = cj.exact_solution(z, data, jnp.array([0.5, 3.0]))
    jitted = jax.jit(f)(0.0, z, A)
    jitted_exact = jax.jit(cj.exact_solution)(z, data, jnp.array([0.5, 3.0]))
    for a, b in [(eager, jitted), (eager_exact, jitted_exact)]:
        for u, v in zip(a, b, strict=True):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-13, atol=1e-14)
