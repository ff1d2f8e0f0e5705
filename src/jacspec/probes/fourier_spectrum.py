"""Fourier spectrum of the network function: spectral bias on grids, along curves and in high dimension.

Baratin 2021 (Baratin, thesis), chapter 3: the network ``f`` is evaluated on a regular grid and the
magnitude of its single-sided DFT is tracked over training (Experiment 1, l.704–737, A.1.1); along a
data manifold the spectrum of ``f∘γ`` is taken instead (Experiment 5, l.793–857, A.1.2); in high
dimension the outputs on a data sample are projected on the eigenvectors of a Gaussian RBF kernel
matrix (Experiment 4, l.761–791, A.1.4 eq. 5); and the robustness of each frequency to random
parameter perturbations is measured (Experiment 2, l.730–737). The maths is in :mod:`jacspec.fourier`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from jacspec import fourier
from jacspec._validation import check_positive_int, describe, model_device, model_dtype
from jacspec.memory import budget_argument, check_memory, largest_activation_bytes
from jacspec.probes.base import Probe, probe_generator

__all__ = ["FourierSpectrum", "expected_input_dim"]

OutputFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def expected_input_dim(model: nn.Module) -> tuple[int | None, str]:
    """Input dimension the model expects, read from its first ``nn.Linear`` (``None`` when unknown).

    Returns
    -------
    dim : int or None
        ``in_features`` of the first ``nn.Linear`` in ``named_modules()`` order, or None when the first
        layer with parameters is not an ``nn.Linear`` (then the grid's dimension is not checked in advance).
    layer : str
        The module's name (for error messages).

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes.fourier_spectrum import expected_input_dim
    >>> expected_input_dim(torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)))[0]
    3
    """
    for layer, module in model.named_modules():
        if isinstance(module, nn.Linear):
            return int(module.in_features), layer or "(root)"
        if any(True for _ in module.parameters(recurse=False)):
            return None, layer
    return None, ""


class FourierSpectrum(Probe):
    r"""Single-sided Fourier spectrum of the network function on a grid, along a curve, or in a kernel basis.

    With the default ``basis="grid"`` the probe builds its own input: ``n_points`` equally spaced points
    of ``interval = [a, b)`` (endpoint excluded) per input axis, evaluates the network there (in eval
    mode, without gradients, in batches) and returns the magnitude of the single-sided DFT, normalised
    so that ``A sin(2π k z + φ)`` reads ``A`` at ``frequency = k`` and a constant ``c`` reads ``|c|`` at
    0 (Baratin 2021, A.1.1)::

        amplitude[k] = (2 − [k = 0] − [k = N/2]) · |Σ_n f(z_n) e^{−2πikn/N}| / N,   z_n = a + n (b − a)/N

    In the grid basis an ``x`` passed to ``measure`` is ignored (the probe's grid is the input), so a
    :class:`~jacspec.Monitor` may pass its data splits to every probe; ``needs_input`` is False.

    * **Multi-dimensional grids** (``input_dim = d > 1``): ``N^d`` points, ``torch.fft.rfftn``, and the
      spectrum summed over shells ``round(|k|) = r`` (``amplitude``; a plane wave of amplitude A reads A)
      and averaged over them (``radial_mean_amplitude``); see :func:`jacspec.fourier.radial_amplitude`.
    * **Along a curve** (``curve=γ``, Baratin 2021, A.1.2): the grid is laid on the curve's parameter
      ``z ∈ [a, b)`` and the spectrum is that of ``f∘γ``; e.g. ``curve=jacspec.datasets.flower_curve(L)``.
    * **Kernel basis** (``basis="kernel"``, Baratin 2021, A.1.4 eq. 5): for high-dimensional inputs, the
      outputs ``f = (f(x_1), …, f(x_n))`` on the sample ``x`` passed to ``measure`` are projected on the
      eigenvectors ``v_j`` of ``K_ij = exp(−‖x_i − x_j‖²/σ²)`` sorted by decreasing eigenvalue:
      ``amplitude[j] = |f · v_j|`` against the eigen-index ``j`` (a generalized frequency). σ is the
      median pairwise distance unless ``bandwidth`` is given. The eigenbasis of a sample is cached (keyed
      by a hash of the sample; up to 4 samples, e.g. a monitor's train and test splits), so repeated
      calls on the same sample cost one forward pass and a matrix product. ``needs_input`` is True.
    * **Robustness** (``perturbation=(δ_1, δ_2, …)``, Baratin 2021, Experiment 2): for each relative size δ,
      ``n_draws`` perturbed parameter vectors ``θ = θ* + δ‖θ*‖ θ̂`` with θ̂ uniform on the unit sphere of
      all floating parameters (drawn with the probe's own generator, reseeded from ``seed`` on every call,
      so every call uses the same directions), the spectrum of the mean perturbed function
      ``|f̃_{Eθ}(k)|`` (the thesis's Fig. 3.3 quantity) and the mean change ``E|A_θ(k) − A_θ*(k)|``.
      The parameters are restored bit for bit afterwards.

    Parameters
    ----------
    n_points : int
        Grid points per axis, ``N`` (default 200, as in the thesis). Frequencies ``0 … ⌊N/2⌋`` are emitted.
    interval : (float, float)
        ``(a, b)``, ``a < b``; frequencies are in cycles per unit, ``k / (b − a)``.
    input_dim : int, optional
        Dimension ``d`` of the grid (``N^d`` points). Default: the ``in_features`` of the model's first
        ``nn.Linear`` (1 when it cannot be read). Ignored with a curve or in the kernel basis.
    curve : callable, optional
        γ mapping a tensor ``z`` of shape ``(N,)`` to points of shape ``(N, d)`` (see
        :func:`jacspec.datasets.flower_curve` and :func:`jacspec.datasets.embed_curve`).
    basis : {"grid", "kernel"}
        Fourier basis on the probe's grid (or curve), or the RBF-kernel eigenbasis of the sample ``x``.
    bandwidth : float, optional
        σ of the RBF kernel (kernel basis); the median heuristic when None.
    max_samples : int
        Kernel basis: only the first ``max_samples`` examples of ``x`` are used (an ``n × n`` eigensolve).
    output : callable, optional
        ``(model, x) -> tensor`` of shape ``(n,)`` or ``(n, c)``; default ``model(x)``. With ``c > 1``
        every output unit gets its own spectrum (an ``output`` dimension).
    normalize_by : mapping, optional
        ``{k_i: A_i}`` target amplitudes: also emit ``normalized_amplitude = amplitude[k_i] / A_i``
        (the thesis's ``|f̃(k_i)| / A_i``). Every ``k_i`` must be below the Nyquist frequency.
    perturbation : sequence of float, optional
        Relative perturbation sizes δ > 0 for the robustness measurement (off when None).
    n_draws : int
        Perturbation draws per size (the thesis uses 100).
    seed : int
        Seed of the probe's own generator (perturbation directions).
    batch_size : int
        Points evaluated per forward pass.
    max_grid_points : int
        Refuse grids with more than this many points (``N^d``); use a curve or the kernel basis.
    progress : bool
        Show a progress bar over perturbation draws.
    on_unsupported : {"raise", "warn", "ignore"}
        Accepted by every probe for a uniform interface; here
        the probe only evaluates the network, so no module is unsupported.
    max_memory : int, float or str, optional
        Budget of the largest buffers (bytes or a string such as ``"2GB"``); None (default): no check. Once the
        ``N`` points are known and before the network is evaluated on them, ``32 N c`` bytes (the float64
        values, their complex DFT and the amplitudes, ``c`` outputs), ``2 · batch × A`` (two activations of a
        forward batch, ``A`` the largest module output of one point,
        :func:`jacspec.memory.largest_activation_bytes`) and, in the kernel basis, ``24 N²`` (the RBF kernel
        matrix and its eigenvectors) are checked; :class:`jacspec.memory.MemoryBudgetError` names the ways out.

    Emits
    -----
    amplitude : (frequency,) — or (eigen,) in the kernel basis; ``output`` first when ``c > 1``
        Single-sided DFT magnitude (units of the output); kernel basis: ``|f · v_j|``.
    radial_mean_amplitude, shell_size : (frequency,)
        Grids with ``d > 1`` only: shell average of ``|F(k)|/N^d`` and the number of lattice frequencies
        per shell.
    eigenvalue : (eigen,)
        Kernel basis only: eigenvalues of the kernel matrix, descending.
    bandwidth : ()
        Kernel basis only: σ used (a variable, so a monitor keeps one per split).
    normalized_amplitude, target_amplitude : (target_frequency,)
        With ``normalize_by``: ``amplitude[k_i] / A_i`` and ``A_i``.
    perturbed_amplitude : (frequency, perturbation)
        With ``perturbation``: spectrum of the function averaged over draws, ``|f̃_{Eθ}(k)|``.
    perturbed_amplitude_ratio : (frequency, perturbation)
        ``perturbed_amplitude / amplitude``: the thesis's Fig. 3.3 (NaN where ``amplitude`` is 0 or below
        1e-9 of the largest amplitude, i.e. at round-off level).
    amplitude_change : (frequency, perturbation)
        ``E_θ̂ |A_θ(k) − A_θ*(k)|``, the mean absolute change of each frequency's amplitude.

    Examples
    --------
    >>> import torch
    >>> from jacspec.probes import FourierSpectrum
    >>> model = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> ds = FourierSpectrum().measure(model)
    >>> ds["amplitude"].dims, ds.sizes["frequency"]
    (('frequency',), 101)
    """

    name = "fourier_spectrum"
    needs_input = False

    def __init__(
        self,
        n_points: int = 200,
        interval: tuple[float, float] = (0.0, 1.0),
        input_dim: int | None = None,
        curve: Callable[[torch.Tensor], torch.Tensor] | None = None,
        basis: Literal["grid", "kernel"] = "grid",
        bandwidth: float | None = None,
        max_samples: int = 1000,
        output: OutputFn | None = None,
        normalize_by: Mapping[float, float] | None = None,
        perturbation: Sequence[float] | None = None,
        n_draws: int = 10,
        seed: int = 0,
        batch_size: int = 65536,
        max_grid_points: int = 2**22,
        progress: bool = False,
        on_unsupported: Literal["raise", "warn", "ignore"] = "raise",
        max_memory: int | float | str | None = None,
    ):
        if on_unsupported not in ("raise", "warn", "ignore"):
            raise ValueError(f"`on_unsupported` must be 'raise', 'warn' or 'ignore', but got {on_unsupported!r}.")
        self.on_unsupported = on_unsupported
        self.max_memory = budget_argument(max_memory)
        n_points = check_positive_int(n_points, "n_points")
        if n_points < 2:
            raise ValueError(f"`n_points` must be at least 2 to have a spectrum, but got {n_points!r}.")
        try:
            low, high = (float(v) for v in interval)
        except (TypeError, ValueError) as err:
            raise ValueError(f"`interval` must be a pair of numbers (a, b), but got {interval!r}.") from err
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"`interval` must be finite with a < b, but got {interval!r}.")
        if input_dim is not None:
            check_positive_int(input_dim, "input_dim")
        if curve is not None and not callable(curve):
            raise TypeError(f"`curve` must be a callable z -> points of shape (N, d), but got {describe(curve)}.")
        if basis not in ("grid", "kernel"):
            raise ValueError(f"`basis` must be 'grid' or 'kernel', but got {basis!r}.")
        if bandwidth is not None and not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
            raise ValueError(f"`bandwidth` must be a positive number or None, but got {bandwidth!r}.")
        check_positive_int(max_samples, "max_samples")
        if output is not None and not callable(output):
            raise TypeError(f"`output` must be a callable (model, x) -> tensor, but got {describe(output)}.")
        targets: dict[float, float] | None = None
        if normalize_by is not None:
            if basis == "kernel":
                raise ValueError(
                    "`normalize_by` applies to Fourier frequencies; it cannot be used with basis='kernel'."
                )
            if not isinstance(normalize_by, Mapping) or not normalize_by:
                raise TypeError(
                    f"`normalize_by` must be a non-empty mapping {{frequency: target amplitude}}, but got "
                    f"{describe(normalize_by)}."
                )
            targets = {float(k): float(a) for k, a in normalize_by.items()}
            bad = {k: a for k, a in targets.items() if not (math.isfinite(a) and a != 0)}
            if bad:
                raise ValueError(f"`normalize_by` amplitudes must be finite and non-zero, but got {bad!r}.")
            fourier._check_frequency_grid(list(targets), n_points, (low, high))
        sizes: tuple[float, ...] | None = None
        if perturbation is not None:
            values = np.atleast_1d(np.asarray(perturbation, dtype=np.float64))
            if values.ndim != 1 or values.size == 0:
                raise ValueError(f"`perturbation` must be a non-empty sequence of sizes, but got {perturbation!r}.")
            if not np.all(np.isfinite(values)) or np.any(values <= 0):
                raise ValueError(
                    f"`perturbation` sizes must be finite and > 0 (relative to ‖θ‖), but got {values.tolist()!r}."
                )
            sizes = tuple(float(v) for v in values)
        self.n_points = n_points
        self.interval = (low, high)
        self.input_dim = input_dim
        self.curve = curve
        self.basis = basis
        self.bandwidth = bandwidth
        self.max_samples = max_samples
        self.output = output
        self.normalize_by = targets
        self.perturbation = sizes
        self.n_draws = check_positive_int(n_draws, "n_draws")
        self.seed = seed
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.max_grid_points = check_positive_int(max_grid_points, "max_grid_points")
        self.progress = bool(progress)
        # the kernel basis projects on a data sample: this instance needs `x` (the Monitor reads the flag)
        self.needs_input = basis == "kernel"
        self._eigen_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor, float]] = {}

    def reset(self) -> None:
        """Forget the cached kernel eigenbases."""
        self._eigen_cache.clear()

    # ------------------------------------------------------------------ inputs
    def points(self, model: nn.Module, x: torch.Tensor | None = None) -> torch.Tensor:
        """The inputs the probe evaluates ``model`` on: the grid, the curve's points or the kernel sample."""
        dtype = model_dtype(model) or torch.get_default_dtype()
        device = model_device(model)
        expected, layer = expected_input_dim(model)
        where = f" (its first Linear layer {layer!r} has in_features={expected})" if expected is not None else ""
        if self.basis == "kernel":
            if x is None:
                raise ValueError(
                    "FourierSpectrum(basis='kernel') projects the outputs on a data sample: pass `x`, a tensor "
                    "of examples (n, ...), to measure (got None)."
                )
            if x.shape[0] < 2:
                raise ValueError(
                    f"`x` must hold at least 2 examples for a kernel spectrum, but got shape {tuple(x.shape)}."
                )
            return x[: self.max_samples]
        if self.curve is not None:
            z_grid = fourier.grid(self.n_points, self.interval, 1, dtype=dtype, device=device)
            try:
                pts = self.curve(z_grid[:, 0])
            except Exception as err:
                raise ValueError(
                    f"`curve` failed on z of shape ({self.n_points},) (a 1-D tensor of grid points): {err}"
                ) from err
            if not isinstance(pts, torch.Tensor) or pts.dim() != 2 or pts.shape[0] != self.n_points:
                raise ValueError(
                    f"`curve` must return a tensor of shape (n_points, d) = ({self.n_points}, d), but returned "
                    f"{describe(pts)}."
                )
            if expected is not None and pts.shape[1] != expected:
                raise ValueError(
                    f"`curve` returns points of dimension {pts.shape[1]} but the model expects inputs of "
                    f"dimension {expected}{where}: use a curve into R^{expected} (e.g. "
                    f"jacspec.datasets.embed_curve(curve, dim={expected}))."
                )
            return pts.to(dtype=dtype, device=device)
        dim = self.input_dim if self.input_dim is not None else (expected or 1)
        if expected is not None and dim != expected:
            raise ValueError(
                f"the grid has dimension {dim} (input_dim={dim}) but the model expects inputs of dimension "
                f"{expected}{where}: set input_dim={expected} or leave it None."
            )
        if self.n_points**dim > self.max_grid_points:
            raise ValueError(
                f"a grid of {self.n_points} points per axis in dimension {dim} has {self.n_points}^{dim} points, "
                f"more than max_grid_points={self.max_grid_points}: use fewer points, a `curve`, or "
                "basis='kernel' with a data sample."
            )
        return fourier.grid(self.n_points, self.interval, dim, dtype=dtype, device=device)

    def evaluate(self, model: nn.Module, points: torch.Tensor) -> torch.Tensor:
        """Network outputs on ``points`` in batches, without gradients, as a ``(n, c)`` tensor."""
        chunks = []
        with torch.no_grad():
            for start in range(0, points.shape[0], self.batch_size):
                batch = points[start : start + self.batch_size]
                try:
                    out = self.output(model, batch) if self.output is not None else model(batch)
                except RuntimeError as err:
                    expected, layer = expected_input_dim(model)
                    hint = "" if expected is None else f" (its first Linear layer {layer!r} expects {expected})"
                    raise ValueError(
                        f"the model cannot take the probe's inputs of shape {tuple(batch.shape)}{hint}: {err}. "
                        "Set `input_dim`, pass a `curve` into the model's input space, or use basis='kernel'."
                    ) from err
                if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != batch.shape[0]:
                    raise ValueError(
                        f"the network output must be a tensor with one row per input ({batch.shape[0]}), but got "
                        f"{describe(out)}; pass `output=` to select it."
                    )
                chunks.append(out.reshape(out.shape[0], -1))
        values = torch.cat(chunks)
        if not values.is_floating_point():
            values = values.double()
        return values

    # ------------------------------------------------------------------ spectra
    def _eigenbasis(self, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        data = sample.detach().cpu().contiguous()
        digest = hashlib.sha1(data.numpy().tobytes()).hexdigest() if data.dtype != torch.bfloat16 else None
        key = (tuple(data.shape), str(data.dtype), digest, self.bandwidth)
        if digest is None or key not in self._eigen_cache:
            eigen = fourier.kernel_eigenbasis(sample.detach(), self.bandwidth)
            if digest is not None:
                if len(self._eigen_cache) >= 4:
                    self._eigen_cache.pop(next(iter(self._eigen_cache)))
                self._eigen_cache[key] = eigen
            return eigen
        return self._eigen_cache[key]

    def _spectrum(self, values: torch.Tensor, grid_dim: int, eigenvectors: torch.Tensor | None) -> torch.Tensor:
        """``(c, n_bins)`` amplitudes of ``(n, c)`` values (the shell sum for d > 1 grids)."""
        if eigenvectors is not None:
            return fourier.kernel_spectrum(values.double(), eigenvectors).abs()
        if grid_dim == 1:
            return fourier.single_sided_amplitude(values.T, dim=-1)
        cube = values.T.reshape(values.shape[1], *([self.n_points] * grid_dim))
        return fourier.radial_amplitude(cube, grid_dim)[0]

    def _check_memory(self, model: nn.Module, points: torch.Tensor) -> None:
        """Refuse, before the network is evaluated, an estimate of the probe's buffers above ``max_memory``."""
        n = int(points.shape[0])
        activation, c = largest_activation_bytes(model, points, self.output)
        needed = 32 * n * c + 2 * min(self.batch_size, n) * activation
        ways_out = ["fewer `n_points=`", "a smaller `batch_size=`"]
        if self.basis == "kernel":
            needed += 24 * n * n
            ways_out = ["a smaller `max_samples=`", "a smaller `batch_size=`"]
        check_memory(
            needed,
            self.max_memory,
            what=f"FourierSpectrum on {n} points ({c} outputs, basis={self.basis!r})",
            ways_out=ways_out,
        )

    def measure(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> xr.Dataset:
        points = self.points(model, x)
        if self.max_memory is not None:
            self._check_memory(model, points)
        grid_dim = 1 if (self.curve is not None or self.basis == "kernel") else int(points.shape[1])
        eigenvectors = None
        extra: dict[str, tuple] = {}
        attrs: dict[str, object] = {"basis": self.basis, "n_evaluated": int(points.shape[0])}
        if self.basis == "kernel":
            eigenvalues, eigenvectors, sigma = self._eigenbasis(points)
            extra["bandwidth"] = ((), sigma, {"long_name": "RBF kernel width sigma", "units": "input"})
            bin_dim = "eigen"
            bin_coord = ("eigen", np.arange(1, points.shape[0] + 1), {"long_name": "kernel eigen-index (1 = largest)"})
            extra["eigenvalue"] = (
                "eigen",
                eigenvalues.cpu().numpy(),
                {"long_name": "eigenvalue of the RBF kernel matrix exp(-|x_i - x_j|^2 / sigma^2)", "units": "1"},
            )
            amp_attrs = {
                "long_name": "|f . v_j|: projection of the outputs on the j-th kernel eigenvector",
                "units": "output",
            }
        else:
            bin_dim = "frequency"
            bin_coord = (
                "frequency",
                fourier.grid_frequencies(self.n_points, self.interval),
                {
                    "long_name": "frequency",
                    "units": "cycles per unit input" if self.curve is None else "cycles per unit z",
                },
            )
            amp_attrs = {"long_name": "single-sided DFT magnitude of the network function", "units": "output"}
            attrs["interval"] = list(self.interval)
            attrs["grid_dim"] = grid_dim
            if self.curve is not None:
                attrs["curve"] = repr(self.curve)

        values = self.evaluate(model, points)
        n_outputs = values.shape[1]
        amplitude = self._spectrum(values, grid_dim, eigenvectors)

        def labelled(array: torch.Tensor | np.ndarray, dims: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
            data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else array
            data = data.astype(np.float64)
            if n_outputs == 1:
                return dims, data[0]
            return ("output", *dims), data

        data_vars: dict[str, tuple] = {"amplitude": (*labelled(amplitude, (bin_dim,)), amp_attrs)}
        data_vars.update(extra)
        if grid_dim > 1:
            cube = values.T.reshape(n_outputs, *([self.n_points] * grid_dim))
            _, mean_amp, shell_size = fourier.radial_amplitude(cube, grid_dim)
            data_vars["radial_mean_amplitude"] = (
                *labelled(mean_amp, (bin_dim,)),
                {"long_name": "|F(k)|/N^d averaged over the shell round(|k|) = frequency", "units": "output"},
            )
            data_vars["shell_size"] = (
                bin_dim,
                shell_size.cpu().numpy().astype(np.int64),
                {"long_name": "number of lattice frequencies in the shell", "units": "1"},
            )
        coords: dict[str, tuple] = {bin_dim: bin_coord}
        if n_outputs > 1:
            coords["output"] = ("output", np.arange(n_outputs), {"long_name": "output unit"})

        if self.normalize_by is not None:
            targets = list(self.normalize_by)
            indices = fourier._check_frequency_grid(targets, self.n_points, self.interval)
            target_amp = np.asarray([self.normalize_by[k] for k in targets], dtype=np.float64)
            picked = amplitude[:, torch.as_tensor(indices, device=amplitude.device)].cpu().numpy()
            data_vars["normalized_amplitude"] = (
                *labelled(picked / np.abs(target_amp), ("target_frequency",)),
                {"long_name": "|f~(k_i)| / |A_i|", "units": "1"},
            )
            data_vars["target_amplitude"] = ("target_frequency", target_amp, {"long_name": "A_i", "units": "output"})
            coords["target_frequency"] = (
                "target_frequency",
                np.asarray(targets, dtype=np.float64),
                {"long_name": "target frequency k_i", "units": bin_coord[2]["units"]},
            )

        if self.perturbation is not None:
            mean_amp, change = self._robustness(model, points, grid_dim, eigenvectors, amplitude)
            # a ratio of two round-off-level amplitudes means nothing: NaN below 1e-9 of the largest amplitude
            floor = 1e-9 * amplitude.amax(dim=-1, keepdim=True)
            significant = (amplitude > floor) & (amplitude > 0)
            ratio = mean_amp / amplitude[..., None]
            ratio = torch.where(significant[..., None], ratio, torch.full_like(ratio, float("nan")))
            dims = (bin_dim, "perturbation")
            data_vars["perturbed_amplitude"] = (
                *labelled(mean_amp, dims),
                {
                    "long_name": "amplitude of the perturbed function averaged over draws, |f~_E[theta]|",
                    "units": "output",
                },
            )
            data_vars["perturbed_amplitude_ratio"] = (
                *labelled(ratio, dims),
                {"long_name": "|f~_E[theta]| / |f~_theta*|", "units": "1"},
            )
            data_vars["amplitude_change"] = (
                *labelled(change, dims),
                {"long_name": "mean over draws of |A_theta - A_theta*|", "units": "output"},
            )
            coords["perturbation"] = (
                "perturbation",
                np.asarray(self.perturbation, dtype=np.float64),
                {"long_name": "relative perturbation size |delta theta| / |theta*|", "units": "1"},
            )
            attrs["n_draws"] = self.n_draws
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def _robustness(
        self,
        model: nn.Module,
        points: torch.Tensor,
        grid_dim: int,
        eigenvectors: torch.Tensor | None,
        amplitude: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spectrum of the mean perturbed function and the mean |amplitude change|, ``(c, bins, sizes)``."""
        params = [p for p in model.parameters() if p.is_floating_point()]
        saved = [p.detach().clone() for p in params]
        theta_norm = math.sqrt(sum(float(s.double().pow(2).sum()) for s in saved))
        generator = probe_generator(self.seed)
        assert self.perturbation is not None
        mean_amplitude, change = [], []
        bar = tqdm(total=len(self.perturbation) * self.n_draws, disable=not self.progress, desc="perturbations")
        try:
            with torch.no_grad():
                for size in self.perturbation:
                    value_sum = None
                    change_sum = torch.zeros_like(amplitude)
                    for _ in range(self.n_draws):
                        directions = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in params]
                        length = math.sqrt(sum(float(d.pow(2).sum()) for d in directions))
                        scale = size * theta_norm / length
                        for p, s, d in zip(params, saved, directions):
                            p.copy_(s + (scale * d).to(dtype=p.dtype, device=p.device))
                        values = self.evaluate(model, points)
                        change_sum += (self._spectrum(values, grid_dim, eigenvectors) - amplitude).abs()
                        value_sum = values.double() if value_sum is None else value_sum + values.double()
                        bar.update()
                    mean_amplitude.append(self._spectrum(value_sum / self.n_draws, grid_dim, eigenvectors))
                    change.append(change_sum / self.n_draws)
        finally:
            bar.close()
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
        return torch.stack(mean_amplitude, dim=-1), torch.stack(change, dim=-1)
