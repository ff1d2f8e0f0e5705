"""Figures of probe results (matplotlib, imported lazily by each function)."""

__all__: list[str] = []
from jacspec.plot.weight_information import plot_log_alpha_quantiles, plot_random_labels, plot_weight_information  # noqa: E402

__all__ += ["plot_log_alpha_quantiles", "plot_random_labels", "plot_weight_information"]
