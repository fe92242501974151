"""Visualisation: static plotly figures (:mod:`~miho.viz.plot`, :mod:`~miho.viz.hand_figures`)
and live ipywidgets explorers (:mod:`~miho.viz.widgets`, imported on demand)."""

from miho.viz import hand_figures, plot

__all__ = ["hand_figures", "plot"]
