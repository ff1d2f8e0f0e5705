"""Figures of probe results (matplotlib is imported inside each function)."""

from jacspec.plot.point_jacobian import mean_log_curves, probability_plots, spectrum_figure, spectrum_histogram
from jacspec.plot.run import curves, plot_run

__all__ = [
    "curves",
    "plot_run",
    "mean_log_curves",
    "probability_plots",
    "spectrum_figure",
    "spectrum_histogram",
]
