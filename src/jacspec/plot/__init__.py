"""Figures of probe results (matplotlib, imported lazily by each function)."""

__all__: list[str] = []
