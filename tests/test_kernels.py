"""Tests of jacspec.kernels against the explicit Jacobian Φ from torch.autograd.functional.jacobian.

Reference: Φ[(i, a), p] = ∂f_a(x_i)/∂w_p built column block by column block with
``torch.autograd.functional.jacobian`` of ``functional_call(model, params, x)`` with respect to every
trainable parameter (float64), and K = Φ Φᵀ (Baratin 2021, B.1.4, eq. 22).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from jacspec.kernels import (
    UnsupportedLayerError,
    alignment,
    center_features,
    centered_kernel_alignment,
    effective_rank,
    label_vector,
    layerwise_tangent_kernels,
    tangent_kernel,
    tangent_kernel_diagonal,
    trace_ratios,
)

ATOL = 1e-8


def explicit_jacobian(model: nn.Module, x: torch.Tensor, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """{parameter name: Φ block (n·c, numel)} for the trainable parameters (or those in ``names``)."""
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad and (names is None or k in names)]
    keys = [k for k, _ in named]
    values = tuple(p.detach() for _, p in named)

    def f(*params):
        return functional_call(model, dict(zip(keys, params)), (x,))

    out = f(*values)
    n, c = out.shape
    jac = torch.autograd.functional.jacobian(f, values)
    return {k: j.reshape(n * c, -1) for k, j in zip(keys, jac)}


def _owner(parameter_name: str) -> str:
    return parameter_name.rsplit(".", 1)[0] if "." in parameter_name else "(root)"


def explicit_kernel(model, x, x2=None, prefix: str | None = None, layers=()) -> torch.Tensor:
    """Φ(x) Φ(x2)ᵀ, restricted to the parameters of layer ``prefix`` when given.

    A layer holds the parameters its module owns directly, plus those of submodules that are not
    layers themselves (``layers``: the layer names reported), i.e. parameters adopted by an ancestor.
    """
    blocks = explicit_jacobian(model, x)
    blocks2 = blocks if x2 is None else explicit_jacobian(model, x2)

    def owned(name):
        if prefix is None or _owner(name) == prefix:
            return True
        inside = prefix == "(root)" or name.startswith(prefix + ".")
        return (
            inside
            and _owner(name) not in layers
            and not any(
                layer != prefix
                and (prefix == "(root)" or layer.startswith(prefix + "."))
                and name.startswith(layer + ".")
                for layer in layers
            )
        )

    keys = [k for k in blocks if owned(k)]
    return sum(blocks[k] @ blocks2[k].T for k in keys)


def test_zoo_kernel_equals_explicit(zoo_case):
    model, x = zoo_case.make(n=5)
    kernel = tangent_kernel(model, x)
    reference = explicit_kernel(model, x)
    assert kernel.shape == (5 * zoo_case.n_classes,) * 2
    torch.testing.assert_close(kernel, reference, atol=ATOL, rtol=0)


def test_zoo_layer_kernels_sum_and_match(zoo_case):
    model, x = zoo_case.make(n=4)
    layer_kernels = layerwise_tangent_kernels(model, x)
    # Σ_ℓ K^ℓ = K, and each K^ℓ is the Gram matrix of the Jacobian columns of that module's parameters
    torch.testing.assert_close(sum(layer_kernels.values()), tangent_kernel(model, x), atol=ATOL, rtol=0)
    for name, kernel in layer_kernels.items():
        torch.testing.assert_close(kernel, explicit_kernel(model, x, prefix=name), atol=ATOL, rtol=0)


def test_zoo_cross_kernel_and_diagonal(zoo_case):
    model, x = zoo_case.make(n=4)
    _, x2 = zoo_case.make(n=3, seed=1)
    cross = tangent_kernel(model, x, x2)
    torch.testing.assert_close(cross, explicit_kernel(model, x, x2), atol=ATOL, rtol=0)
    diagonal = sum(tangent_kernel_diagonal(model, x).values())
    torch.testing.assert_close(diagonal, torch.diagonal(explicit_kernel(model, x)), atol=ATOL, rtol=0)


@pytest.mark.parametrize("chunk_size", [1, 3])
def test_zoo_chunked_equals_unchunked(zoo_case, chunk_size):
    model, x = zoo_case.make(n=7)
    torch.testing.assert_close(
        tangent_kernel(model, x, chunk_size=chunk_size), explicit_kernel(model, x), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("case_id", ["cnn", "embedding", "layernorm"])
def test_small_memory_budget_recomputes_blocks(case_id):
    # a budget so small that Φ_ℓ of the wider layers cannot be kept whole: blocks are recomputed
    import zoo

    case = next(c for c in zoo.ZOO if c.id == case_id)
    model, x = case.make(n=8)
    kernel = tangent_kernel(model, x, memory_budget_gb=1e-5)
    torch.testing.assert_close(kernel, explicit_kernel(model, x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_model_closed_form(bias):
    # f(x) = W x + b: Φ[(i, a)] = e_a ⊗ [x_i, 1], so K[(i, a), (j, b)] = δ_ab (x_i·x_j + 1) (the +1 from b)
    torch.manual_seed(0)
    model = nn.Linear(6, 4, bias=bias).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    expected = torch.kron(x @ x.T + (1.0 if bias else 0.0), torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(tangent_kernel(model, x), expected, atol=1e-12, rtol=0)


class SharedTwice(nn.Module):
    """The same Linear applied twice (weight sharing across calls: cross terms between the calls)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        return self.out(self.fc(torch.tanh(self.fc(x))))


class ScaledChild(nn.Module):
    """A module with its own parameter and a child module: the fallback handles the direct parameter."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.5, -0.5, 2.0]))
        self.child = nn.Linear(4, 3)

    def forward(self, x):
        return self.scale * torch.sin(self.child(x))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(4, 2, batch_first=True)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        seq = x.reshape(x.shape[0], 2, 4)
        attended, _ = self.attention(seq, seq, seq)
        return self.out(attended.mean(1))


class OutsideForward(nn.Module):
    """The parent's forward reads ``self.fc.weight`` directly: the hook on ``fc`` never fires."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.out = nn.Linear(3, 3)

    def forward(self, x):
        return self.out(torch.tanh(x @ self.fc.weight.T))


def _extra_models():
    return {
        "conv_stride_dilation": (
            lambda: nn.Sequential(
                nn.Conv2d(2, 3, 3, stride=2, padding=2, dilation=2),
                nn.ReLU(inplace=True),  # in place right after the layer output
                nn.Flatten(),
                nn.LazyLinear(3),
            ),
            (2, 7, 7),
        ),
        "conv_groups_conv1d": (
            lambda: nn.Sequential(
                nn.Conv2d(2, 4, 3, groups=2),
                nn.Tanh(),
                nn.Flatten(2),
                nn.Conv1d(4, 2, 3),
                nn.Flatten(),
                nn.LazyLinear(3),
            ),
            (2, 5, 5),
        ),
        "linear_on_sequence": (
            lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Flatten(), nn.Linear(15, 3)),
            (3, 4),
        ),
        "shared_twice": (SharedTwice, (4,)),
        "scaled_child": (ScaledChild, (4,)),
        "attention": (Attention, (8,)),
        "parameter_read_by_parent": (OutsideForward, (4,)),
    }


@pytest.mark.parametrize("model_id", list(_extra_models()))
def test_more_modules_equal_explicit(model_id):
    build, shape = _extra_models()[model_id]
    torch.manual_seed(0)
    model = build()
    x = torch.randn(4, *shape)
    model(x)  # materialise lazy modules
    model = model.double().eval()
    x = x.double()
    layer_kernels = layerwise_tangent_kernels(model, x)
    torch.testing.assert_close(sum(layer_kernels.values()), explicit_kernel(model, x), atol=ATOL, rtol=0)
    for name, kernel in layer_kernels.items():
        reference = explicit_kernel(model, x, prefix=name, layers=list(layer_kernels))
        torch.testing.assert_close(kernel, reference, atol=ATOL, rtol=0)


def test_adopted_parameters_are_named_by_their_owner():
    torch.manual_seed(0)
    x8, x4 = torch.randn(3, 8, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    structured = {"implementation": "structured"}
    # out_proj runs inside MultiheadAttention's forward: differentiated there, labelled by its owner
    kernels = layerwise_tangent_kernels(Attention().double(), x8, **structured)
    assert list(kernels) == ["attention", "attention.out_proj", "out"]
    kernels = layerwise_tangent_kernels(OutsideForward().double(), x4, **structured)
    assert list(kernels) == ["fc", "out"]
    # auto routes parameters read by a parent to the functional engine: layer = the owning module
    report: dict = {}
    kernels = layerwise_tangent_kernels(Attention().double(), x8, report=report)
    assert list(kernels) == ["attention", "attention.out_proj", "out"]
    assert report["implementation"] == "functional"
    kernels = layerwise_tangent_kernels(OutsideForward().double(), x4)
    assert list(kernels) == ["fc", "out"]


def test_layers_subset():
    import zoo

    model, x = zoo.ZOO[0].make(n=4)
    kernels = layerwise_tangent_kernels(model, x, layers=["2"])
    assert list(kernels) == ["2"]
    torch.testing.assert_close(kernels["2"], explicit_kernel(model, x, prefix="2"), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match=r"`layers` must name modules .*'nope'"):
        layerwise_tangent_kernels(model, x, layers=["nope"])


def test_frozen_parameters_are_left_out():
    import zoo

    model, x = zoo.ZOO[0].make(n=3)
    model[0].weight.requires_grad_(False)
    reference = explicit_kernel(model, x)  # explicit_jacobian only takes trainable parameters
    torch.testing.assert_close(tangent_kernel(model, x), reference, atol=ATOL, rtol=0)


def test_batchnorm_train_mode_raises():
    import zoo

    model, x = next(c for c in zoo.ZOO if c.id == "batchnorm_eval").make(n=4)
    model.train()
    with pytest.raises(ValueError, match=r"BatchNorm module '1' in train mode.*model.eval\(\)"):
        tangent_kernel(model, x)


def test_memory_budget_error_before_allocating():
    import zoo

    model, x = zoo.ZOO[0].make(n=50)
    with pytest.raises(MemoryError, match=r"memory_budget_gb=1e-06"):
        tangent_kernel(model, x, memory_budget_gb=1e-6)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


class SequenceFirst(nn.Module):
    """MultiheadAttention with batch_first=False: its output is (L, n, E), not batched along dim 0."""

    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(4, 2)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        seq = x.reshape(x.shape[0], 2, 4).transpose(0, 1)
        attended, _ = self.attention(seq, seq, seq)
        return self.out(attended.mean(0))


@pytest.mark.parametrize("model_cls, match", [(SequenceFirst, "not batched"), (Tied, "weight tying")])
def test_on_unsupported(model_cls, match):
    torch.manual_seed(0)
    model = model_cls().double()
    x = torch.randn(4, 3 if model_cls is Tied else 8, dtype=torch.float64)
    structured = {"implementation": "structured"}
    with pytest.raises(UnsupportedLayerError, match=match):
        tangent_kernel(model, x, **structured)
    with pytest.warns(UserWarning, match=match):
        warned = tangent_kernel(model, x, on_unsupported="warn", **structured)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignored = tangent_kernel(model, x, on_unsupported="ignore", **structured)
    torch.testing.assert_close(warned, ignored)
    # what remains is the kernel of the supported parameters only
    if model_cls is SequenceFirst:
        # in_proj is dropped; out_proj (run inside the attention's forward) is adopted by the root
        reference = sum(
            block @ block.T
            for name, block in explicit_jacobian(model, x).items()
            if name.startswith(("out.", "attention.out_proj."))
        )
    else:
        reference = sum(block @ block.T for name, block in explicit_jacobian(model, x).items() if name.endswith("bias"))
    torch.testing.assert_close(ignored, reference, atol=ATOL, rtol=0)
    # the default (auto) takes the exact functional path: the whole kernel, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(tangent_kernel(model, x), explicit_kernel(model, x), atol=ATOL, rtol=0)


def test_bad_options():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="on_unsupported"):
        tangent_kernel(model, torch.randn(3, 2), on_unsupported="skip")
    with pytest.raises(ValueError, match="memory_budget_gb"):
        tangent_kernel(model, torch.randn(3, 2), memory_budget_gb=-1)


# ---------------------------------------------------------------------------------------------------
# Statistics against plain numpy written from the thesis' equations (Baratin 2021, eqs. 5-7)
# ---------------------------------------------------------------------------------------------------


def _random_psd(r, rank, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((r, rank)) * rng.uniform(0.1, 3.0, rank)
    return a @ a.T


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_effective_rank_and_trace_ratios_numpy(seed):
    k = _random_psd(30, 12, seed)
    lam = np.linalg.eigvalsh(k)[::-1]
    lam_pos = np.clip(lam, 0, None)
    mu = lam_pos / lam_pos.sum()
    mu = mu[mu > 0]
    expected_erank = np.exp(-np.sum(mu * np.log(mu)))  # eq. 5
    assert effective_rank(lam) == pytest.approx(expected_erank, rel=1e-12)
    ks = [1, 2, 5, 10, 20]
    expected = [lam[:k].sum() / lam.sum() for k in ks]  # eq. 6: Σ_{j<k} λ_j / Σ_j λ_j (top k)
    np.testing.assert_allclose(trace_ratios(lam, ks), expected, rtol=1e-12)


def test_effective_rank_limits():
    assert effective_rank(np.ones(7)) == pytest.approx(7.0)
    assert effective_rank(np.array([3.0, 0.0, -1e-15])) == pytest.approx(1.0)
    assert np.isnan(effective_rank(np.zeros(3)))


@pytest.mark.parametrize("seed", [0, 1])
def test_cka_and_alignment_numpy(seed):
    n, c = 6, 3
    k = _random_psd(n * c, 8, seed)
    y = torch.as_tensor(np.random.default_rng(seed).integers(0, c, n))
    yv = np.eye(c)[y.numpy()].reshape(-1)  # concatenated one-hot labels
    ky = np.outer(yv, yv)
    r = n * c
    centering = np.eye(r) - np.ones((r, r)) / r
    kc, kyc = centering @ k @ centering, centering @ ky @ centering
    expected_cka = np.trace(kc @ kyc) / (np.linalg.norm(kc) * np.linalg.norm(kyc))  # eq. 7
    expected_alignment = np.trace(k @ ky) / (np.linalg.norm(k) * np.linalg.norm(ky))  # Fig. B.6
    kt = torch.as_tensor(k)
    labels = label_vector(y, c)
    assert centered_kernel_alignment(kt, labels) == pytest.approx(expected_cka, rel=1e-10)
    assert centered_kernel_alignment(kt, torch.as_tensor(ky)) == pytest.approx(expected_cka, rel=1e-10)
    assert alignment(kt, labels) == pytest.approx(expected_alignment, rel=1e-10)
    assert alignment(kt, torch.as_tensor(ky)) == pytest.approx(expected_alignment, rel=1e-10)


def test_center_features_equals_centered_jacobian():
    import zoo

    model, x = zoo.ZOO[0].make(n=5)
    n, c = 5, 3
    phi = torch.cat(list(explicit_jacobian(model, x).values()), dim=1).reshape(n, c, -1)
    phi_centered = (phi - phi.mean(0, keepdim=True)).reshape(n * c, -1)  # Φ(x) − E_x Φ(x), per class
    torch.testing.assert_close(
        center_features(tangent_kernel(model, x), n, c), phi_centered @ phi_centered.T, atol=ATOL, rtol=0
    )
