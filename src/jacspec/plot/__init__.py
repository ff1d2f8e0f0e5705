"""Figures of probe results (matplotlib is imported inside each function)."""

from jacspec.plot.run import curves, plot_run

__all__ = ["curves", "plot_run"]
