"""Independent references: plain numpy loops written from docs/theory.md, no package code."""

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


def projection_field_reference(x, y, W, A, stop_gradient=False):
    """`-grad L_P` (or the stop-gradient field) by loops over pairs, from docs/theory.md §3.

    `L_P = 1/2 sum A_ic [|W x_i - y_c|^2 + |y_c - x_i|^2]`. With stop-gradient, `y` is held in
    the predictor term and `x` in the direct term, so those derivatives are dropped.
    """
    x, y, W, A = (np.asarray(a, dtype=np.float64) for a in (x, y, W, A))
    dx = np.zeros_like(x)
    dy = np.zeros_like(y)
    dW = np.zeros_like(W)
    for i in range(x.shape[0]):
        for c in range(y.shape[0]):
            a = A[i, c]
            e = W @ x[i] - y[c]  # predictor residual
            dx[i] -= a * (W.T @ e)
            dW -= a * np.outer(e, x[i])
            dy[c] -= a * (y[c] - x[i])  # direct term, live y
            if not stop_gradient:
                dy[c] += a * e  # predictor term, live y
                dx[i] -= a * (x[i] - y[c])  # direct term, live x
    return dx, dy, dW


def capture_figures(monkeypatch):
    """Record every ``(figure, path)`` that goes through ``collapse_jax._plots.save_figure``
    (the file is still written), so a test can read back what a command plotted."""
    import collapse_jax._plots as plots

    saved = []
    real = plots.save_figure

    def save(fig, path, **kw):
        saved.append((fig, str(path)))
        return real(fig, path, **kw)

    monkeypatch.setattr(plots, "save_figure", save)
    return saved


def line_by_label(ax, label):
    """The one line of ``ax`` with legend label ``label``, as an ``(n, 2)`` array."""
    lines = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(lines) == 1, (label, [ln.get_label() for ln in ax.get_lines()])
    return np.asarray(lines[0].get_xydata())


def assert_axes_labelled(fig):
    for ax in fig.axes:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), ax.get_title()


def run_on_two_devices(script: str, out_path) -> None:
    """Run ``script`` (``python -c``) in a fresh process whose CPU is split into two JAX
    devices, with the tests folder and ``out_path`` as its arguments; fail with its stderr."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
