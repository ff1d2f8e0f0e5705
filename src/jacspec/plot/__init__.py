"""Figures of probe results (matplotlib, imported lazily by each function)."""

__all__: list[str] = []
from jacspec.plot.mutual_information import (  # noqa: E402
    plot_estimates_vs_truth,
    plot_information_plane,
    plot_mine_history,
)

__all__ += ["plot_information_plane", "plot_mine_history", "plot_estimates_vs_truth"]
