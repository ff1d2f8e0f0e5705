"""Figures of probe results (matplotlib is imported inside each function)."""

from jacspec.plot.run import curves, plot_run
from jacspec.plot.tangent_kernel import (
    plot_eigenfunctions,
    plot_eigenvalue_ratio,
    plot_layer_alignment,
    plot_tangent_kernel,
)

__all__ = [
    "curves",
    "plot_eigenfunctions",
    "plot_eigenvalue_ratio",
    "plot_layer_alignment",
    "plot_run",
    "plot_tangent_kernel",
]
