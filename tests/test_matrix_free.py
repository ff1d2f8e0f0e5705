"""Matrix-free tangent-kernel statistics against the dense kernel and against closed forms."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from jacspec.kernels import effective_rank, layerwise_tangent_kernels
from jacspec.matrix_free import (
    LanczosConvergenceWarning,
    TangentKernelOperator,
    block_lanczos_top,
    matrix_free_statistics,
    slq_trace,
)


def _mlp(seed: int = 0, d: int = 6, c: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, 24), torch.nn.Tanh(), torch.nn.Linear(24, c)).double()


def _dense(model, x, center):
    # reference: the structured dense kernels of jacspec.kernels (themselves tested against autograd loops)
    kernels = layerwise_tangent_kernels(model, x)
    n = x.shape[0]
    c = next(iter(kernels.values())).shape[0] // n
    if center:
        from jacspec.kernels import center_features

        kernels = {k: center_features(v, n, c) for k, v in kernels.items()}
    return {k: v.numpy() for k, v in kernels.items()}


@pytest.mark.parametrize("structured", [True, False])
@pytest.mark.parametrize("center", [False, True])
def test_operator_products_match_the_dense_kernel(center, structured):
    model = _mlp()
    x = torch.randn(15, 6, dtype=torch.float64)
    dense = sum(_dense(model, x, center).values())
    op = TangentKernelOperator(model, x, center_features=center, chunk_size=4, structured=structured)
    # the Linear-only MLP takes the cached-factor path when allowed, autograd otherwise
    assert (op._layer_factors is not None) == structured
    v = np.random.default_rng(0).standard_normal((45, 3))
    np.testing.assert_allclose(op.matmat(v), dense @ v, rtol=1e-10, atol=1e-10)
    traces = op.layer_traces()
    for name, k in _dense(model, x, center).items():
        assert traces[name] == pytest.approx(np.trace(k), rel=1e-10)


def test_factor_cache_stays_within_its_byte_limit():
    # the MLP's cache is 2·n·(c·o + d + 1) float64 per layer: 2·15·((3·24 + 6 + 1) + (3·3 + 24 + 1))·8
    # = 27 120 B; one byte below it the operator runs the autograd products, with the same products
    # (reference: the dense kernel)
    model = _mlp()
    x = torch.randn(15, 6, dtype=torch.float64)
    needed = 2 * 15 * ((3 * 24 + 6 + 1) + (3 * 3 + 24 + 1)) * 8
    assert TangentKernelOperator(model, x, max_factor_bytes=needed)._layer_factors is not None
    op = TangentKernelOperator(model, x, max_factor_bytes=needed - 1, center_features=False)
    assert op._layer_factors is None
    v = np.random.default_rng(1).standard_normal((45, 2))
    np.testing.assert_allclose(op.matmat(v), sum(_dense(model, x, False).values()) @ v, rtol=1e-10, atol=1e-10)


def _conv_net() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 6)),
        torch.nn.Conv1d(1, 2, 3),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
    ).double()


def _frozen_bias_mlp() -> torch.nn.Module:
    model = _mlp(seed=2)
    model[0].bias.requires_grad_(False)
    return model


@pytest.mark.parametrize(
    ("make", "structured"), [(_conv_net, False), (_frozen_bias_mlp, True)], ids=["conv", "frozen-bias"]
)
@pytest.mark.parametrize("center", [False, True])
def test_structured_path_only_where_exact(make, structured, center):
    # A Conv1d layer: the operator must fall back to autograd products. A frozen bias: the cached Linear
    # factors drop its column and stay exact. Either way the products equal those of the autograd path, and
    # the kernel those of torch.func.jacrev below (a reference independent of jacspec.kernels).
    model = make()
    x = torch.randn(9, 6, dtype=torch.float64)
    op = TangentKernelOperator(model, x, center_features=center, chunk_size=4)
    assert (op._layer_factors is not None) == structured
    ref = TangentKernelOperator(model, x, center_features=center, chunk_size=4, structured=False)
    v = np.random.default_rng(1).standard_normal((27, 2))
    np.testing.assert_allclose(op.matmat(v), ref.matmat(v), rtol=1e-12, atol=1e-12)
    from torch.func import functional_call, jacrev

    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    jac = jacrev(lambda p: functional_call(model, p, (x,)))(params)  # (n, c, *shape) per parameter
    dense = sum(j.reshape(27, -1) @ j.reshape(27, -1).T for j in jac.values()).numpy()
    if center:
        h = np.kron(np.eye(9) - 1 / 9, np.eye(3))
        dense = h @ dense @ h
    np.testing.assert_allclose(op.matmat(v), dense @ v, rtol=1e-10, atol=1e-10)
    assert sum(op.layer_traces().values()) == pytest.approx(np.trace(dense), rel=1e-10)


def test_block_lanczos_resolves_exact_multiplicities():
    # K = D ⊗ I_c: every eigenvalue exactly c-fold, which single-vector Lanczos cannot resolve
    c = 5
    d = np.linspace(10.0, 1.0, 40)
    a = np.kron(np.diag(d), np.eye(c))
    values, vectors, _ = block_lanczos_top(lambda v: a @ v, a.shape[0], 12, block_size=20)
    np.testing.assert_allclose(values, np.repeat(d[:3], c)[:12], rtol=1e-8)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(12), atol=1e-8)


def test_slq_trace_reports_an_honest_standard_error():
    # over 40 seeds, |estimate − exact| ≤ 3 SE in at least 90 % (a 3σ band holds ~99 % if the SE is honest)
    lam = np.linspace(0.1, 3.0, 80)
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((80, 80)))
    a = q * lam @ q.T  # not diagonal: Rademacher probes are exact on diagonal matrices
    exact = float((lam * np.log(lam)).sum())
    inside = 0
    for seed in range(40):
        est, se = slq_trace(lambda v: a @ v, 80, lambda t: t * np.log(np.where(t > 0, t, 1.0)), probes=10, seed=seed)
        inside += abs(est - exact) <= 3 * se
        assert se > 0
    assert inside >= 36


def test_statistics_agree_with_the_dense_kernel():
    model = _mlp(1, d=5, c=4)
    x = torch.randn(50, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (50,))
    dense = sum(_dense(model, x, True).values())
    lam = np.linalg.eigvalsh(dense)[::-1]
    stats = matrix_free_statistics(model, x, y, top_k=20, probes=16, steps=30, center_features=True)
    np.testing.assert_allclose(stats.eigenvalues, lam[:20], rtol=1e-6)
    assert stats.trace == pytest.approx(np.trace(dense), rel=1e-10)
    exact_rank = effective_rank(lam)
    assert abs(stats.effective_rank - exact_rank) <= max(4 * stats.effective_rank_se, 0.05 * exact_rank)
    # CKA reference: the dense formula of jacspec.kernels
    from jacspec.kernels import centered_kernel_alignment, label_vector

    cka = centered_kernel_alignment(torch.as_tensor(dense), label_vector(y, 4).double())
    assert abs(stats.cka_labels - cka) <= max(4 * stats.cka_labels_se, 0.01 * cka)


def test_closed_form_at_a_size_where_the_dense_kernel_is_impossible():
    # f(x) = W x: K = (X Xᵀ) ⊗ I_c. With X = U diag(s) Vᵀ, Uᵀ1 = 0, the nonzero eigenvalues are s_j², each
    # c-fold; n·c = 50 000 (the dense float64 kernel would take 20 GB).
    n, d, c = 5000, 12, 10
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((n, d))
    raw -= raw.mean(axis=0)
    u, _ = np.linalg.qr(raw)
    s = np.linspace(4.0, 1.0, d)
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = torch.as_tensor(u * s @ v.T)
    model = torch.nn.Linear(d, c, bias=False).double()
    labels = torch.as_tensor(rng.integers(0, c, n))
    stats = matrix_free_statistics(model, x, labels, top_k=25, probes=32, center_features=True, chunk_size=2500)
    expected = np.repeat(s**2, c)
    np.testing.assert_allclose(stats.eigenvalues, expected[:25], rtol=1e-8)
    assert stats.trace == pytest.approx(expected.sum(), rel=1e-10)
    # The effective rank is a stochastic (SLQ) estimate: it must lie within 3 of its own standard errors of the
    # closed form, and that standard error must be small enough for the check to mean something. Measured over
    # seeds 0-2: |error| ≤ 1.48 SE (margin 51 % from 3 SE), SE ≤ 4.0 % of the value (margin 33 % from 6 %).
    erank = effective_rank(expected)
    assert abs(stats.effective_rank - erank) <= 3 * stats.effective_rank_se
    assert stats.effective_rank_se <= 0.06 * erank
    onehot = np.eye(c)[labels.numpy()]
    xn = x.numpy()
    cka = (np.linalg.norm(xn.T @ onehot) ** 2) / (np.sqrt(c * (s**4).sum()) * n * (1 - 1 / c))
    assert stats.cka_labels == pytest.approx(cka, rel=0.05)


def test_lanczos_that_does_not_converge_warns_with_the_residuals():
    # 200 eigenvalues packed in [1, 1.001] with k = 10: two restarts of one step cannot separate them
    a = np.diag(np.linspace(1.0, 1.001, 200))
    with pytest.warns(LanczosConvergenceWarning, match=r"did not converge in max_restarts=2 .*relative residuals"):
        values, _, _ = block_lanczos_top(lambda v: a @ v, 200, 10, steps=1, max_restarts=2, tol=1e-12)
    assert values.shape == (10,)
    # a well-separated spectrum converges: no warning (reference: the diagonal itself)
    b = np.diag(np.arange(1.0, 101.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LanczosConvergenceWarning)
        values, _, _ = block_lanczos_top(lambda v: b @ v, 100, 3)
    np.testing.assert_allclose(values, [100.0, 99.0, 98.0], rtol=1e-8)
