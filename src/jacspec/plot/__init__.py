"""Figures of probe results (matplotlib is imported inside each function)."""

from jacspec.plot.fourier_spectrum import (
    plot_manifold_spectra,
    plot_robustness,
    plot_spectral_bias,
    plot_spectral_norms,
)
from jacspec.plot.run import curves, plot_run

__all__ = ["curves", "plot_run"]
__all__ += ["plot_manifold_spectra", "plot_robustness", "plot_spectral_bias", "plot_spectral_norms"]
