"""Figures of :class:`~jacspec.probes.FourierSpectrum` results.

After Aristide Baratin, "Some Phenomenological Investigations in Deep Learning", PhD thesis, Université de
Montréal, 2021, chapter 3 (spectral bias).

* :func:`plot_spectral_bias` — heatmap of ``|f̃(k_i)| / A_i``, frequency × training step (Fig. 3.1).
* :func:`plot_spectral_norms` — each layer's spectral norm over training (Fig. 3.1, right).
* :func:`plot_robustness` — ``|f̃_{Eθ}(k)| / |f̃_θ*(k)|``, frequency × perturbation size (Fig. 3.3).
* :func:`plot_manifold_spectra` — spectra of ``f∘γ_L`` for several curves, one line each (Fig. 3.8).

matplotlib is imported inside each function. Every function takes an optional ``ax`` and returns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["plot_manifold_spectra", "plot_robustness", "plot_spectral_bias", "plot_spectral_norms"]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6, 3.5))
    return ax


def _require_dims(array: xr.DataArray, dims: tuple[str, ...], argument: str) -> xr.DataArray:
    if not isinstance(array, xr.DataArray):
        raise TypeError(f"`{argument}` must be an xarray.DataArray with dims {dims}, but got {type(array).__name__}.")
    extra = [d for d in array.dims if d not in dims]
    if set(dims) - set(array.dims) or extra:
        raise ValueError(
            f"`{argument}` must have exactly the dims {dims} (select or average the others first, e.g. "
            f".mean('phase')), but has {array.dims}."
        )
    return array.transpose(*dims)


def plot_spectral_bias(
    normalized_amplitude: xr.DataArray, ax: Any = None, title: str | None = None, colorbar: bool = True
) -> Any:
    """Heatmap of the normalised amplitudes ``|f̃(k_i)| / A_i`` against training step (Baratin's thesis, 2021, Fig. 3.1).

    Parameters
    ----------
    normalized_amplitude : xarray.DataArray
        Dims ``(step, target_frequency)`` — the probe's ``normalized_amplitude`` stacked over steps
        (average other dims, e.g. phase draws, first). Colours are clipped to ``[0, 1]``.
    ax : matplotlib Axes, optional
    title : str, optional
    colorbar : bool
        Draw a colour bar.

    Returns
    -------
    matplotlib Axes
        Frequency on the vertical axis, step on the horizontal one.

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> from jacspec.plot.fourier_spectrum import plot_spectral_bias
    >>> amplitude = xr.DataArray(np.tril(np.ones((4, 4))), dims=("step", "target_frequency"),
    ...                          coords={"step": [0, 100, 200, 300], "target_frequency": [5, 10, 15, 20]})
    >>> ax = plot_spectral_bias(amplitude)  # low frequencies learned first: a lower-left triangle
    >>> ax.get_ylabel()  # doctest: +ELLIPSIS
    '...frequency...'
    """
    data = _require_dims(normalized_amplitude, ("step", "target_frequency"), "normalized_amplitude")
    ax = _axes(ax)
    steps = data["step"].values
    freqs = data["target_frequency"].values
    mesh = ax.pcolormesh(
        steps, np.arange(len(freqs)), np.clip(data.values.T, 0, 1), vmin=0, vmax=1, cmap="viridis", shading="nearest"
    )
    ax.set_yticks(np.arange(len(freqs)))
    ax.set_yticklabels([f"{f:g}" for f in freqs])
    ax.set_xlabel("training step")
    ax.set_ylabel("frequency k")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label="|f(k)| / A")
    return ax


def plot_spectral_norms(
    spectral_norm: Any, ax: Any = None, title: str | None = None, log_steps: bool | None = None
) -> Any:
    """Spectral norm of each layer over training, one line per layer (Baratin's thesis, 2021, Fig. 3.1).

    Parameters
    ----------
    spectral_norm : xarray.DataArray, Dataset or DataTree
        Dims ``(step, layer)`` — :class:`~jacspec.probes.SpectralNorm`'s ``spectral_norm`` over steps —
        or the ``spectral_norm`` group of a run.
    ax : matplotlib Axes, optional
    title : str, optional
    log_steps : bool, optional
        Log (symlog) step axis; by default when the probed steps span more than two decades.

    Returns
    -------
    matplotlib Axes
        Layers coloured input → output; a legend up to 8 layers, a colour bar beyond.

    Examples
    --------
    >>> ax = plot_spectral_norms(jacspec.open_run("runs/demo.nc")["spectral_norm"])  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    from jacspec.plot._common import as_dataset, layer_labels, legend, log_time

    shapes = None
    if not isinstance(spectral_norm, xr.DataArray):
        ds = as_dataset(spectral_norm, "spectral_norm", "spectral_norm")
        if "spectral_norm" not in ds:
            raise ValueError(f"`spectral_norm` has no 'spectral_norm' variable; available: {sorted(ds.data_vars)}.")
        spectral_norm = ds["spectral_norm"]
    if "matrix_shape" in spectral_norm.coords:
        shapes = [str(v) for v in spectral_norm["matrix_shape"].values]
    data = _require_dims(spectral_norm, ("step", "layer"), "spectral_norm")
    ax = _axes(ax)
    names = layer_labels(data["layer"].values)
    if shapes is not None:
        names = [f"{n} ({s})" for n, s in zip(names, shapes)]
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.85, max(len(names), 1)))
    for i, (name, color) in enumerate(zip(names, colors)):
        ax.plot(data["step"].values, data.isel(layer=i).values, marker=".", ms=3, color=color, label=name)
    log_time(ax, data["step"].values, log_steps)
    ax.set_ylabel(str(spectral_norm.attrs.get("long_name", "spectral norm")), fontsize=8)
    if not legend(ax, title="layer (module)", ncol=2 if len(names) > 4 else 1):
        mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, max(len(names) - 1, 1) / 0.85))
        ax.figure.colorbar(mappable, ax=ax, label="layer, input → output")
    ax.set_title(title or "spectral norm of each weight matrix", fontsize=9)
    return ax


def plot_robustness(
    ratio: xr.DataArray, ax: Any = None, title: str | None = None, frequencies: Any = None, colorbar: bool = True
) -> Any:
    """Normalised spectrum of the perturbed model against perturbation size (Baratin's thesis, 2021, Fig. 3.3).

    Parameters
    ----------
    ratio : xarray.DataArray
        Dims ``(frequency, perturbation)`` — the probe's ``perturbed_amplitude_ratio``. Colours clipped
        to ``[0, 1]``.
    frequencies : sequence, optional
        Frequencies to show (e.g. the target's ``k_i``); all when None.

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> from jacspec.plot.fourier_spectrum import plot_robustness
    >>> ratio = xr.DataArray(np.linspace(1, 0.2, 12).reshape(4, 3), dims=("frequency", "perturbation"),
    ...                      coords={"frequency": [5, 10, 15, 20], "perturbation": [0.0, 0.1, 0.2]})
    >>> ax = plot_robustness(ratio)
    """
    data = _require_dims(ratio, ("frequency", "perturbation"), "ratio")
    if frequencies is not None:
        data = data.sel(frequency=list(frequencies))
    ax = _axes(ax)
    freqs = data["frequency"].values
    sizes = data["perturbation"].values
    mesh = ax.pcolormesh(
        np.arange(len(freqs)),
        np.arange(len(sizes)),
        np.clip(data.values.T, 0, 1),
        vmin=0,
        vmax=1,
        cmap="viridis",
        shading="nearest",
    )
    ax.set_xticks(np.arange(len(freqs)))
    ax.set_xticklabels([f"{f:g}" for f in freqs])
    ax.set_yticks(np.arange(len(sizes)))
    ax.set_yticklabels([f"{s:g}" for s in sizes])
    ax.set_xlabel("frequency k")
    ax.set_ylabel("relative perturbation δ")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label="|f_E[θ](k)| / |f_θ*(k)|")
    return ax


def plot_manifold_spectra(
    spectra: Mapping[Any, xr.DataArray],
    ax: Any = None,
    title: str | None = None,
    log: bool = True,
    max_frequency: float | None = None,
) -> Any:
    """Spectra of ``f∘γ`` for several curves γ (e.g. flowers with L petals), one line each.

    Parameters
    ----------
    spectra : mapping
        ``{label: amplitude}``, each an ``amplitude`` DataArray with dim ``frequency`` (or ``eigen``).
    log : bool
        Logarithmic amplitude axis.
    max_frequency : float, optional
        Cut the horizontal axis there.

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> from jacspec.plot.fourier_spectrum import plot_manifold_spectra
    >>> k = np.arange(1, 30)
    >>> spectra = {f"L = {petals}": xr.DataArray(np.exp(-k / (2 + petals)), dims="frequency", coords={"frequency": k})
    ...            for petals in (0, 4, 8)}
    >>> ax = plot_manifold_spectra(spectra)
    >>> len(ax.get_lines())
    3
    """
    if not isinstance(spectra, Mapping) or not spectra:
        raise TypeError(
            f"`spectra` must be a non-empty mapping {{label: DataArray}}, but got {type(spectra).__name__}."
        )
    ax = _axes(ax)
    for label, amplitude in spectra.items():
        if not isinstance(amplitude, xr.DataArray) or amplitude.ndim != 1:
            raise ValueError(f"spectrum {label!r} must be a 1-D xarray.DataArray, but got {type(amplitude).__name__}.")
        dim = amplitude.dims[0]
        if max_frequency is not None:
            amplitude = amplitude.where(amplitude[dim] <= max_frequency, drop=True)
        ax.plot(amplitude[dim].values, amplitude.values, label=str(label))
        ax.set_xlabel(dim)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("amplitude")
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax
