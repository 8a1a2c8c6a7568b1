"""Shared helpers for the notebooks: the conditional-density protocol, density grids, metrics, plots, training."""
