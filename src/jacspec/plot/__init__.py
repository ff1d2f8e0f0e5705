"""Figures of probe results (matplotlib is imported inside each function).

Every function that draws a probe's results over training takes an ``xarray.Dataset`` or an
``xarray.DataTree`` (a run from :func:`jacspec.open_run`, or one of its groups) and an optional ``ax``.
:func:`plot_probe` draws the figure of one probe group in its paper's style; :func:`write_report`
writes them all with a self-contained HTML page (``jacspec report RUN --out DIR``).
"""

from jacspec.plot.fourier_spectrum import (
    plot_manifold_spectra,
    plot_robustness,
    plot_spectral_bias,
    plot_spectral_norms,
)
from jacspec.plot.mutual_information import plot_estimates_vs_truth, plot_information_plane, plot_mine_history
from jacspec.plot.panels import (
    plot_fourier_spectrum,
    plot_group,
    plot_mutual_information,
    plot_performance,
    plot_point_jacobian,
    plot_probe,
    plot_variable,
)
from jacspec.plot.point_jacobian import mean_log_curves, probability_plots, spectrum_figure, spectrum_histogram
from jacspec.plot.report import compare_figure, summary_rows, write_report
from jacspec.plot.run import curves, plot_run
from jacspec.plot.tangent_kernel import (
    plot_eigenfunctions,
    plot_eigenvalue_ratio,
    plot_layer_alignment,
    plot_tangent_kernel,
    plot_tangent_kernel_summary,
)
from jacspec.plot.weight_information import plot_log_alpha_quantiles, plot_random_labels, plot_weight_information

__all__ = ["curves", "plot_run"]
__all__ += ["plot_manifold_spectra", "plot_robustness", "plot_spectral_bias", "plot_spectral_norms"]
__all__ += ["plot_log_alpha_quantiles", "plot_random_labels", "plot_weight_information"]
__all__ += ["mean_log_curves", "probability_plots", "spectrum_figure", "spectrum_histogram"]
__all__ += ["plot_information_plane", "plot_mine_history", "plot_estimates_vs_truth"]
__all__ += [
    "plot_eigenfunctions",
    "plot_eigenvalue_ratio",
    "plot_layer_alignment",
    "plot_tangent_kernel",
    "plot_tangent_kernel_summary",
]
__all__ += ["plot_probe", "plot_group", "plot_variable", "plot_performance", "plot_point_jacobian"]
__all__ += ["plot_fourier_spectrum", "plot_mutual_information", "write_report", "summary_rows", "compare_figure"]
