"""Figures of probe results (matplotlib is imported inside each function)."""

from jacspec.plot.fourier_spectrum import (
    plot_manifold_spectra,
    plot_robustness,
    plot_spectral_bias,
    plot_spectral_norms,
)
from jacspec.plot.mutual_information import plot_estimates_vs_truth, plot_information_plane, plot_mine_history
from jacspec.plot.point_jacobian import mean_log_curves, probability_plots, spectrum_figure, spectrum_histogram
from jacspec.plot.run import curves, plot_run
from jacspec.plot.tangent_kernel import (
    plot_eigenfunctions,
    plot_eigenvalue_ratio,
    plot_layer_alignment,
    plot_tangent_kernel,
)
from jacspec.plot.weight_information import plot_log_alpha_quantiles, plot_random_labels, plot_weight_information

__all__ = ["curves", "plot_run"]
__all__ += ["plot_manifold_spectra", "plot_robustness", "plot_spectral_bias", "plot_spectral_norms"]
__all__ += ["plot_log_alpha_quantiles", "plot_random_labels", "plot_weight_information"]
__all__ += ["mean_log_curves", "probability_plots", "spectrum_figure", "spectrum_histogram"]
__all__ += ["plot_information_plane", "plot_mine_history", "plot_estimates_vs_truth"]
__all__ += ["plot_eigenfunctions", "plot_eigenvalue_ratio", "plot_layer_alignment", "plot_tangent_kernel"]
