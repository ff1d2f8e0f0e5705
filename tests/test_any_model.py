"""Every probe on every zoo model (tests/zoo.py: ZOO + EXTENDED_ZOO) against a slow, obvious reference.

References (float64, CPU):

* tangent features: one ``torch.autograd.grad`` per example ``i`` and output ``a`` of the full-batch
  output ``f[i, a]`` with respect to every trainable Parameter object (a tied Parameter once: autograd
  sums its uses), ``K^ℓ = Σ_{p owned by ℓ} J_p J_pᵀ`` (Baratin 2021, B.1.4 eq. 22);
* input Jacobians: one ``torch.autograd.grad`` of ``f[i, a]`` with respect to ``x`` per example and output,
  singular values from ``torch.linalg.svdvals``;
* Hessian diagonal: reverse-over-reverse ``torch.autograd.grad`` (``create_graph=True``) of the summed
  cross-entropy at sampled entries, and ``torch.autograd.functional.hessian`` on the small tied model;
  GGN diagonal ``Σ_n J_nᵀ (diag p_n − p_n p_nᵀ) J_n`` from the reference Jacobians;
* spectral norms: ``torch.linalg.svdvals`` of the weight matrices sliced by hand here.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from jacspec import information
from jacspec.kernels import UnsupportedLayerError, layerwise_tangent_kernels
from jacspec.probes import MutualInformation, PointJacobian, SpectralNorm, TangentKernel, WeightInformation

from zoo import ALL_ZOO, ZOO, assert_no_hooks, tiny_bert, tiny_gpt2

N = 3
ATOL = 1e-8


def _owner(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else "(root)"


def reference_jacobians(model: nn.Module, x: torch.Tensor, output=None) -> dict[str, torch.Tensor]:
    """``{parameter name: (n, c, numel)}``: one autograd.grad per example and output of the batch output."""
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    with torch.enable_grad():
        f = model(x) if output is None else output(model, x)
        n, c = f.shape
        out = {k: torch.zeros(n, c, p.numel(), dtype=f.dtype) for k, p in params.items()}
        for i in range(n):
            for a in range(c):
                grads = torch.autograd.grad(f[i, a], list(params.values()), retain_graph=True, allow_unused=True)
                for k, g in zip(params, grads):
                    if g is not None:
                        out[k][i, a] = g.reshape(-1)
    return out


def reference_layer_kernels(jacobians: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    kernels: dict[str, torch.Tensor] = {}
    for k, jac in jacobians.items():
        rows = jac.reshape(-1, jac.shape[-1])
        kernels[_owner(k)] = kernels.get(_owner(k), 0) + rows @ rows.T
    return kernels


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(actual, expected, atol=ATOL * scale, rtol=0, msg=lambda m: f"{what}: {m}")


@pytest.fixture(params=ALL_ZOO, ids=lambda case: case.id)
def case(request):
    return request.param


# --------------------------------------------------------------------------------------------------
# TangentKernel
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["auto", "functional"])
def test_tangent_kernel_layers_match_reference(case, implementation):
    model, x = case.make(n=N)
    reference = reference_layer_kernels(reference_jacobians(model, x))
    report: dict = {}
    kernels = layerwise_tangent_kernels(model, x, implementation=implementation, report=report)
    assert list(kernels) == list(reference)  # layer = the module owning the parameter, root "(root)"
    for layer, kernel in kernels.items():
        _close(kernel, reference[layer], f"{case.id} layer {layer!r}")
    used = json.loads(report["parameters_used"])
    assert used == [k for k, p in model.named_parameters() if p.requires_grad]
    skipped = json.loads(report["parameters_skipped"])
    assert skipped == {k: "frozen" for k, p in model.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("case_id", ["lstm_seq_first", "tied_decoder", "hf_bert"])
def test_functional_cross_kernel_diagonal_and_small_budget(case_id):
    # cross-kernel Φ(x) Φ(x2)ᵀ, the diagonal, and blocks recomputed under a budget too small to keep Φ
    from jacspec.kernels import tangent_kernel, tangent_kernel_diagonal

    case = next(c for c in ALL_ZOO if c.id == case_id)
    model, x = case.make(n=N)
    _, x2 = case.make(n=2, seed=1)
    ja, jb = reference_jacobians(model, x), reference_jacobians(model, x2)
    cross = sum(a.reshape(-1, a.shape[-1]) @ jb[k].reshape(-1, a.shape[-1]).T for k, a in ja.items())
    _close(tangent_kernel(model, x, x2, implementation="functional"), cross, f"{case_id} cross")
    full = sum(reference_layer_kernels(ja).values())
    diagonal = sum(tangent_kernel_diagonal(model, x, implementation="functional").values())
    _close(diagonal, torch.diagonal(full), f"{case_id} diagonal")
    small = tangent_kernel(model, x, implementation="functional", memory_budget_gb=1e-4, chunk_size=1)
    _close(small, full, f"{case_id} small budget")


STRUCTURED_CASES = {c.id for c in ZOO} | {
    "conv1d",
    "grouped_conv2d",
    "conv_transpose2d",
    "groupnorm",
    "conv3d_bn3d_convtranspose3d",
    "resnet_block_bn_eval",
    "frozen",
}


def test_auto_keeps_the_hooks_where_they_are_exact(case):
    # auto must not send every model to the (slower) functional path: known layers stay structured
    model, x = case.make(n=N)
    report: dict = {}
    layerwise_tangent_kernels(model, x, report=report)
    expected = "structured" if case.id in STRUCTURED_CASES else "functional"
    assert report["implementation"] == expected, report.get("functional_because")


def test_structured_is_exact_or_raises(case):
    # the per-layer hooks never give a silently wrong kernel: either the reference or UnsupportedLayerError
    model, x = case.make(n=N)
    reference = reference_layer_kernels(reference_jacobians(model, x))
    try:
        kernels = layerwise_tangent_kernels(model, x, implementation="structured")
    except UnsupportedLayerError as err:
        assert "implementation='functional'" in str(err)
        return
    _close(sum(kernels.values()), sum(reference.values()), case.id)


def test_tangent_kernel_probe_matches_reference(case):
    model, x = case.make(n=N)
    y = torch.arange(N) % case.n_classes
    ds = TangentKernel(center_features=False, return_kernel=True).measure(model, x, y)
    reference = reference_layer_kernels(reference_jacobians(model, x))
    total = sum(reference.values())
    _close(torch.from_numpy(ds["kernel"].values), total, case.id)
    expected = np.sort(np.linalg.eigvalsh(total.numpy()))[::-1]
    np.testing.assert_allclose(ds["eigenvalues"].values, expected, atol=ATOL * max(1.0, expected[0]), rtol=0)
    assert list(ds["layer"].values) == list(reference)
    traces = np.array([float(torch.trace(k)) for k in reference.values()])
    np.testing.assert_allclose(ds["layer_trace"].values, traces, atol=ATOL * max(1.0, traces.max()), rtol=0)
    assert ds.attrs["implementation"] in ("structured", "functional")


def test_tangent_complexity_matches_reference(case):
    # reference: ‖Φ‖_F² = Tr K from the per-example loop; the complexity Σ_t ‖δw_t‖ ‖Φ_t‖_F of one update
    from jacspec.probes import TangentComplexity

    model, x = case.make(n=N)
    probe = TangentComplexity()
    first = probe.measure(model, x)
    trace = float(sum(torch.trace(k) for k in reference_layer_kernels(reference_jacobians(model, x)).values()))
    assert float(first["trace"]) == pytest.approx(trace, rel=1e-10, abs=1e-12)
    weights = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in weights:
            p.add_(0.01)
    step = float(np.sqrt(sum(p.numel() for p in {id(p): p for p in weights}.values()))) * 0.01
    second = probe.measure(model, x)
    assert float(second["update_norm"]) == pytest.approx(step, rel=1e-10)
    assert float(second["complexity"]) == pytest.approx(step * np.sqrt(trace), rel=1e-10)


def test_performance_matches_reference(case):
    # reference: torch's cross-entropy and argmax of the eval-mode logits
    from jacspec.probes import Performance

    model, x = case.make(n=N)
    y = torch.arange(N) % case.n_classes
    ds = Performance().measure(model, x, y)
    with torch.no_grad():
        logits = model(x)
    assert float(ds["loss"]) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-12)
    assert float(ds["accuracy"]) == pytest.approx(float((logits.argmax(1) == y).double().mean()), abs=0)


def test_tangent_kernel_lanczos_matches_reference(case):
    # the matrix-free path (TangentKernel(method="lanczos")) on every zoo model against the slow float64
    # reference kernel (per-example torch.func Jacobians): the top eigenvalues (to the Lanczos tolerance), the
    # exact trace and per-layer traces, and the SLQ effective rank within its reported standard error
    from jacspec.kernels import effective_rank

    n = 8
    model, x = case.make(n=n)
    ds = TangentKernel(method="lanczos", top_k=6, center_features=False).measure(model, x)
    reference = reference_layer_kernels(reference_jacobians(model, x))
    total = sum(reference.values()).numpy()
    expected = np.sort(np.linalg.eigvalsh(total))[::-1]
    np.testing.assert_allclose(ds["eigenvalues"].values, expected[:6], rtol=0, atol=1e-6 * max(1.0, expected[0]))
    assert float(ds["trace"]) == pytest.approx(np.trace(total), rel=1e-8, abs=ATOL)
    assert list(ds["layer"].values) == list(reference)
    traces = np.array([float(torch.trace(k)) for k in reference.values()])
    np.testing.assert_allclose(ds["layer_trace"].values, traces, atol=ATOL * max(1.0, traces.max()), rtol=1e-8)
    exact = effective_rank(torch.from_numpy(expected.copy()))
    se = float(ds["effective_rank_se"])
    assert abs(float(ds["effective_rank"]) - exact) <= max(4 * se, 0.05 * exact), (float(ds["effective_rank"]), exact)


@pytest.mark.parametrize("build", [tiny_bert, tiny_gpt2], ids=["bert", "gpt2"])
def test_hugging_face_called_the_natural_way(build):
    # the call: output=lambda m, z: m(inputs_embeds=z).logits on the raw HF model
    torch.manual_seed(0)
    model = build().double().eval()
    z = torch.randn(N, 5, 8, dtype=torch.float64)

    def output(m, inputs):
        return m(inputs_embeds=inputs).logits

    ds = TangentKernel(center_features=False, return_kernel=True, output=output).measure(model, z)
    reference = reference_layer_kernels(reference_jacobians(model, z, output))
    _close(torch.from_numpy(ds["kernel"].values), sum(reference.values()), build.__name__)
    assert ds.attrs["implementation"] == "functional"


# --------------------------------------------------------------------------------------------------
# PointJacobian
# --------------------------------------------------------------------------------------------------


def test_point_jacobian_matches_reference(case):
    if not case.float_input:
        pytest.skip("integer inputs have no input Jacobian")
    model, x = case.make(n=N)
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        f = model(xg)
        rows = [
            [torch.autograd.grad(f[i, a], xg, retain_graph=True)[0][i].reshape(-1) for a in range(f.shape[1])]
            for i in range(N)
        ]
    expected = np.stack([torch.linalg.svdvals(torch.stack(r)).numpy() for r in rows])
    ds = PointJacobian().measure(model, x)
    np.testing.assert_allclose(ds["singular_values"].values, expected, atol=ATOL * max(1.0, expected.max()), rtol=0)


# --------------------------------------------------------------------------------------------------
# WeightInformation: Hessian and GGN diagonals of the total loss w.r.t. each Parameter object
# --------------------------------------------------------------------------------------------------


def _sampled_hessian_diagonal(model, x, y, params, per_tensor: int = 3):
    """{name: (indices, H_ii)} by reverse-over-reverse autograd at a few seeded entries of each parameter."""
    generator = torch.Generator().manual_seed(0)
    with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):  # the fused kernels have no double backward
        loss = information.cross_entropy_sum(model(x), y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, allow_unused=True)
    out = {}
    for (name, p), g in zip(params.items(), grads):
        idx = torch.randperm(p.numel(), generator=generator)[:per_tensor]
        values = []
        for i in idx.tolist():
            if g is None or not g.requires_grad:
                values.append(0.0)
                continue
            (h,) = torch.autograd.grad(g.reshape(-1)[i], p, retain_graph=True, allow_unused=True)
            values.append(0.0 if h is None else float(h.reshape(-1)[i]))
        out[name] = (idx, torch.tensor(values, dtype=torch.float64))
    return out


def test_hessian_and_ggn_diagonals_match_reference(case):
    model, x = case.make(n=N)
    y = torch.arange(N) % case.n_classes
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    with torch.enable_grad():
        exact = information.hessian_diagonal(model, x, y, params, method="exact")
    for name, (idx, expected) in _sampled_hessian_diagonal(model, x, y, params).items():
        _close(exact[name].reshape(-1)[idx], expected, f"{case.id} Hessian {name}")
    # GGN: Σ_n J_nᵀ Λ_n J_n with Λ_n = diag(p_n) − p_n p_nᵀ (softmax cross-entropy)
    jac = reference_jacobians(model, x)
    with torch.no_grad():
        prob = torch.softmax(model(x), dim=1)
    lam = torch.diag_embed(prob) - prob[:, :, None] * prob[:, None, :]
    with torch.enable_grad():
        ggn = information.hessian_diagonal(model, x, y, params, method="ggn")
    for name, j in jac.items():
        expected = torch.einsum("nai,nab,nbi->i", j, lam, j)
        _close(ggn[name].reshape(-1), expected, f"{case.id} GGN {name}")


@pytest.mark.parametrize(
    "case_id, layers",
    [
        ("tied_decoder", ["embedding", "hidden", "decoder"]),
        ("tied_linears", ["a", "b"]),
        ("parent_reads", ["fc", "mix"]),
    ],
)
def test_weight_information_on_a_shared_parameter_equals_the_full_hessian(case_id, layers):
    # the silent-wrong case: the Hessian diagonal of a tied (or parent-read) weight counts every use
    case = next(c for c in ALL_ZOO if c.id == case_id)
    model, x = case.make(n=6)
    y = torch.arange(6) % case.n_classes
    params = dict(model.named_parameters())
    keys = list(params)

    def loss(*values):
        out = torch.func.functional_call(model, dict(zip(keys, values)), (x,))
        return information.cross_entropy_sum(out, y)

    hessian = torch.autograd.functional.hessian(loss, tuple(p.detach() for p in params.values()))
    diag = {k: torch.diagonal(hessian[i][i].reshape(params[k].numel(), -1)) for i, k in enumerate(keys)}
    ds = WeightInformation(beta=1e-3, keep_log_alpha=True).measure(model, x, y)
    expected = torch.cat(
        [information.laplace_log_alpha(params[k].reshape(-1), diag[k], 1e-3).clamp(-32, 2) for k in keys]
    )
    np.testing.assert_allclose(ds["log_alpha"].values, expected.numpy(), atol=1e-8, rtol=0)
    assert list(ds["layer"].values) == layers


def test_variational_fit_samples_a_tied_weight_as_a_whole():
    # local reparametrisation would give each use of the tied weight its own noise; with every Linear of
    # the model tied it must not be used at all, so both settings draw the same samples (same seed)
    case = next(c for c in ALL_ZOO if c.id == "tied_linears")
    model, x = case.make(n=8)
    y = torch.arange(8) % 3
    params = dict(model.named_parameters())
    fits = [
        information.fit_variational_log_alpha(
            model,
            x,
            y,
            params,
            1e-2,
            n_steps=5,
            local_reparametrization=local,
            generator=torch.Generator().manual_seed(0),
        )
        for local in (True, False)
    ]
    for name in params:
        torch.testing.assert_close(fits[0]["log_alpha"][name], fits[1]["log_alpha"][name], atol=0, rtol=0)


# --------------------------------------------------------------------------------------------------
# SpectralNorm
# --------------------------------------------------------------------------------------------------

_GATES = {nn.LSTM: 4, nn.GRU: 3}


def _reference_matrices(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(layer, matrix) for every parameter with two or more dims, sliced by hand."""
    modules = dict(model.named_modules())
    found = []
    for name, p in model.named_parameters():
        if p.dim() < 2:
            continue
        module_name, _, key = name.rpartition(".")
        module = modules[module_name]
        layer = module_name or "(root)"
        w = p.detach()
        if isinstance(module, nn.MultiheadAttention) and key == "in_proj_weight":
            found += [(layer, block) for block in w.chunk(3)]
        elif isinstance(module, nn.RNNBase) and key.startswith(("weight_ih", "weight_hh")):
            found += [(layer, block) for block in w.chunk(_GATES.get(type(module), 1))]
        elif isinstance(module, nn.modules.conv._ConvTransposeNd):
            found.append((layer, w.transpose(0, 1).reshape(w.shape[1], -1)))
        else:
            found.append((layer, w.reshape(w.shape[0], -1)))
    return found


def test_spectral_norm_matches_reference(case):
    model, _ = case.make(n=N)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every matrix of the zoo is known: nothing skipped
        ds = SpectralNorm(method="exact").measure(model)
    reference = _reference_matrices(model)
    expected = np.array([float(torch.linalg.svdvals(w)[0]) for _, w in reference])
    np.testing.assert_allclose(ds["matrix_spectral_norm"].values, expected, rtol=1e-10, atol=0)
    assert list(ds["matrix_layer"].values) == [layer for layer, _ in reference]
    for layer in ds["layer"].values:
        top = max(e for (owner, _), e in zip(reference, expected) if owner == layer)
        assert ds["spectral_norm"].sel(layer=layer).item() == pytest.approx(top, rel=1e-10)


def test_spectral_norm_unknown_parameter_modes():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.randn(3, 4))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x + self.table.sum(0))

    model = Custom()
    with pytest.raises(UnsupportedLayerError, match=r"'table' of '\(root\)' \(Custom, shape \(3, 4\)\)"):
        SpectralNorm(on_unsupported="raise").measure(model)
    with pytest.warns(UserWarning, match="skipped"):
        warned = SpectralNorm(on_unsupported="warn").measure(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignored = SpectralNorm(on_unsupported="ignore").measure(model)
    assert list(ignored["layer"].values) == list(warned["layer"].values) == ["fc"]
    assert json.loads(ignored.attrs["parameters_skipped"])["table"] == "not a known weight matrix"


# --------------------------------------------------------------------------------------------------
# One non-intrusive test: probes x zoo
# --------------------------------------------------------------------------------------------------


def _probes(case):
    probes = [TangentKernel(), SpectralNorm(), WeightInformation(hessian="ggn")]
    if case.float_input:
        probes += [PointJacobian(), MutualInformation(method="ksg")]
    return probes


def test_probes_leave_the_model_untouched(case):
    case_ = case
    model, x = case_.make(n=20)  # MutualInformation needs 20 examples
    y = torch.arange(20) % case_.n_classes
    model.train()
    for module in model.modules():  # BatchNorm stays in eval (probes measure in eval anyway)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    with torch.enable_grad():
        torch.nn.functional.cross_entropy(model(x), y).backward()  # existing gradients must survive
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    grads = {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    modes = {k: m.training for k, m in model.named_modules()}
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    for probe in _probes(case_):
        probe.measure(model, x, y)
        assert torch.equal(torch.get_rng_state(), rng), probe.name
        for k, p in model.named_parameters():
            assert torch.equal(p.detach(), params[k]), (probe.name, k)
            assert p.requires_grad == flags[k], (probe.name, k)
            assert (p.grad is None and grads[k] is None) or torch.equal(p.grad, grads[k]), (probe.name, k)
        for k, b in model.named_buffers():
            assert torch.equal(b, buffers[k]), (probe.name, k)
        assert {k: m.training for k, m in model.named_modules()} == modes, probe.name
    handle.remove()
    assert_no_hooks(model)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["raise", "warn", "ignore"])
def test_unsupported_layer_under_each_mode_names_module_class_and_fallback(mode):
    # LSTM returns h_n with the batch in dim 1: the per-layer hooks cannot split it by example
    case = next(c for c in ALL_ZOO if c.id == "lstm_batch_first")
    model, x = case.make(n=N)
    options = {"implementation": "structured", "on_unsupported": mode}
    if mode == "raise":
        with pytest.raises(UnsupportedLayerError, match=r"'rnn' \(LSTM\).*implementation='functional'"):
            layerwise_tangent_kernels(model, x, **options)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report: dict = {}
        kernels = layerwise_tangent_kernels(model, x, report=report, **options)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if mode == "warn":
        assert any("'rnn' (LSTM)" in m and "implementation='functional'" in m for m in messages)
    else:
        assert not any("'rnn'" in m for m in messages)
    # what remains is exactly the read-out layer, and the skipped parameters are recorded
    reference = reference_layer_kernels(reference_jacobians(model, x))
    _close(sum(kernels.values()), reference["out"], "lstm without rnn")
    skipped = json.loads(report["parameters_skipped"])
    assert set(skipped) == {k for k, _ in model.named_parameters() if k.startswith("rnn.")}


@pytest.mark.parametrize(
    "probe", [TangentKernel, PointJacobian, SpectralNorm, WeightInformation, MutualInformation], ids=lambda p: p.name
)
def test_every_probe_takes_on_unsupported(probe):
    assert probe(on_unsupported="ignore").on_unsupported == "ignore"
    with pytest.raises(ValueError, match=r"`on_unsupported` must be 'raise', 'warn' or 'ignore', but got 'skip'"):
        probe(on_unsupported="skip")


def test_model_with_no_trainable_parameter_names_the_frozen_ones():
    model = nn.Linear(2, 3)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match=r"frozen: \['weight', 'bias'\]"):
        layerwise_tangent_kernels(model, torch.randn(4, 2))


def test_output_not_batched_as_output_says():
    model = nn.Linear(2, 3)
    with pytest.raises(ValueError, match=r"one row per example"):
        layerwise_tangent_kernels(
            model, torch.randn(4, 2), output=lambda m, x: m(x).sum(0, keepdim=True), implementation="functional"
        )


@pytest.mark.parametrize("probe", [TangentKernel, SpectralNorm, WeightInformation], ids=lambda p: p.name)
def test_records_round_trip_through_netcdf(probe, tmp_path):
    import xarray as xr

    case = next(c for c in ALL_ZOO if c.id == "frozen")
    model, x = case.make(n=4)
    ds = probe().measure(model, x, torch.arange(4) % 3)
    ds.to_netcdf(tmp_path / "probe.nc")
    with xr.open_dataset(tmp_path / "probe.nc") as back:
        xr.testing.assert_identical(ds, back.load())
    skipped = json.loads(ds.attrs["parameters_skipped"])
    if probe is SpectralNorm:  # a weight-only probe measures frozen matrices too
        assert "0.weight" in json.loads(ds.attrs["parameters_used"]) and "2.bias" in skipped
    else:
        assert skipped["0.weight"] == "frozen" and skipped["2.bias"] == "frozen"


def test_mutual_information_names_a_module_not_batched_first():
    case = next(c for c in ALL_ZOO if c.id == "lstm_seq_first")
    model, x = case.make(n=20)
    with pytest.raises(ValueError, match=r"module 'rnn' \(LSTM\) has shape \(4, 20, 4\), not one row per example"):
        MutualInformation(between=("input", "rnn"), method="ksg").measure(model, x)


@pytest.mark.parametrize("case_id, layer", [("hf_bert", "model.classifier"), ("tied_decoder", "embedding")])
def test_functional_layers_subset(case_id, layer):
    case = next(c for c in ALL_ZOO if c.id == case_id)
    model, x = case.make(n=N)
    report: dict = {}
    kernels = layerwise_tangent_kernels(model, x, layers=[layer], report=report)
    assert list(kernels) == [layer]  # only the named layer is hooked, so BERT may stay structured here
    reference = reference_layer_kernels(reference_jacobians(model, x))
    _close(kernels[layer], reference[layer], f"{case_id} {layer}")
    skipped = json.loads(report["parameters_skipped"])
    assert skipped and set(skipped.values()) == {"not used"}


@pytest.mark.parametrize("case_id", ["hf_bert", "lstm_batch_first", "tied_linears", "mlp"])
def test_tangent_kernel_repeated_calls_reuse_what_they_learnt(case_id):
    # the second call skips the one-example forward and (on models the hooks cannot take) the hooked forward;
    # reference: the first call, and a fresh probe after the model changed its number of outputs
    case = next(c for c in ALL_ZOO if c.id == case_id)
    model, x = case.make(n=N)
    probe = TangentKernel(center_features=False, return_kernel=True)
    first, second = probe.measure(model, x), probe.measure(model, x)
    np.testing.assert_array_equal(second["kernel"].values, first["kernel"].values)
    assert second.attrs["implementation"] == first.attrs["implementation"]
    if case_id == "mlp":
        model[-1] = nn.Linear(model[-1].in_features, 5).double()  # same model object, now c = 5
        third = probe.measure(model, x)
        reference = reference_layer_kernels(reference_jacobians(model, x))
        _close(torch.from_numpy(third["kernel"].values), sum(reference.values()), "c changed")
