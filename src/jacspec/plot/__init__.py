"""Figures of probe results (matplotlib, imported lazily by each function)."""

__all__: list[str] = []
from jacspec.plot.tangent_kernel import (  # noqa: E402
    plot_eigenfunctions,
    plot_eigenvalue_ratio,
    plot_layer_alignment,
    plot_tangent_kernel,
)

__all__ += ["plot_eigenfunctions", "plot_eigenvalue_ratio", "plot_layer_alignment", "plot_tangent_kernel"]
