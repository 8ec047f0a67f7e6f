"""The stress test's figures: moved to :mod:`simulate.plots.stress`; these names stay importable from here."""

from __future__ import annotations

from .plots.stress import dial_figures, label

__all__ = ["dial_figures", "label"]
