"""Independent references: plain numpy loops written from MODEL.md, no package code."""

import numpy as np


def alignment_reference(K, n, M):
    A = np.zeros((K * n + M, K))
    for c in range(K):
        A[c * n : (c + 1) * n, c] = 1.0
    A[K * n :] = 1.0
    return A


def embedding_field_reference(x, y, A):
    """`-grad L_E` by loops over pairs."""
    x, y, A = (np.asarray(a, dtype=np.float64) for a in (x, y, A))
    dx = np.zeros_like(x)
    dy = np.zeros_like(y)
    for i in range(x.shape[0]):
        for c in range(y.shape[0]):
            dx[i] -= A[i, c] * (x[i] - y[c])
            dy[c] -= A[i, c] * (y[c] - x[i])
    return dx, dy


def embedding_hessian_reference(A, d):
    """Hessian of L_E in the flattened `[x.ravel(), y.ravel()]` layout."""
    A = np.asarray(A, dtype=np.float64)
    N, K = A.shape
    r, s = A.sum(1), A.sum(0)
    H_rows = np.block([[np.diag(r), -A], [-A.T, np.diag(s)]])
    return np.kron(H_rows, np.eye(d))


def min_l2_reference(y):
    y = np.asarray(y)
    best = np.inf
    for a in range(len(y)):
        for b in range(len(y)):
            if a != b:
                best = min(best, np.linalg.norm(y[a] - y[b]))
    return best
