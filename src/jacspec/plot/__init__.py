"""Figures of probe results (matplotlib, imported lazily by each function)."""

from jacspec.plot.fourier_spectrum import (
    plot_manifold_spectra,
    plot_robustness,
    plot_spectral_bias,
    plot_spectral_norms,
)

__all__: list[str] = []
__all__ += ["plot_manifold_spectra", "plot_robustness", "plot_spectral_bias", "plot_spectral_norms"]
