"""What every figure shares: the error class, saving, panels, legends, bands and the selection of a measure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..errors import SimulateError
from ..measures import Summary
from .labels import _TARGET_FREE

DPI = 150
Z95 = 1.959963984540054  # Phi^{-1}(0.975)
DIRECT_EFFECT = "direct_effect"  # the mediator name of the between-site intercept row


class PlotError(SimulateError):
    """A figure that cannot be made from what it was given; the message is one line."""


def _as_summary(summary) -> Summary:
    """A :class:`simulate.measures.Summary`, read from a long frame (metadata in ``attrs``) when given one."""
    return Summary.from_frame(summary)


def _nominal(nominal, summary: Summary) -> float:
    """The nominal coverage: the one asked for, else the run's confidence level, else 0.95."""
    if nominal is not None:
        return float(nominal)
    return float(summary.level) if summary.level is not None else 0.95



def save(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format (PNG at 150 dpi); returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        fig.savefig(path, dpi=DPI, format=fmt)
        out.append(path)
    return out


def _mediators(frame: pd.DataFrame, mediator) -> list[str]:
    present = list(dict.fromkeys(frame["mediator"]))
    if mediator is None:
        real = [m for m in present if m != DIRECT_EFFECT]
        return real or present
    wanted = [mediator] if isinstance(mediator, str) else list(mediator)
    missing = [m for m in wanted if m not in present]
    if missing:
        raise PlotError(f"mediator {missing[0]!r} not in the summary (mediators: {', '.join(present)})")
    return wanted


def _select(summary: pd.DataFrame, measure: str, target: str) -> pd.DataFrame:
    tgt = "none" if measure in _TARGET_FREE else target
    sel = summary[(summary["measure"] == measure) & (summary["target"] == tgt)]
    if sel.empty:
        have = sorted(set(summary.loc[summary["measure"] == measure, "target"]))
        if not have:
            raise PlotError(f"measure {measure!r} not in the summary")
        raise PlotError(f"measure {measure!r} has no target {tgt!r} in the summary (targets: {', '.join(have)})")
    return sel


def _nominal_band(ax, x: np.ndarray, nominal: float, n: int, label: str = "nominal level") -> None:
    half = Z95 * math.sqrt(nominal * (1 - nominal) / max(n, 1))
    lo, hi = (x.min(), x.max()) if x.size else (0.0, 1.0)
    pad = 0.04 * (hi - lo if hi > lo else 1.0)
    xx = np.array([lo - pad, hi + pad])
    # a thick light line and a hatched band: unlike any estimator's line or band
    ax.fill_between(xx, nominal - half, nominal + half, facecolor="none", edgecolor="#888888", hatch="///",
                    linewidth=0, zorder=0)
    ax.plot(xx, [nominal, nominal], color="#888888", linewidth=3, alpha=0.8, zorder=1,
            label=f"{label} {nominal:g} (hatched: its MC band, n = {n})")


def _wrap(fig: Figure, text: str, size: float = 12.0) -> str:
    """Break a title into lines that fit the figure's width (about 0.55 em per character)."""
    import textwrap

    chars = max(30, int(fig.get_figwidth() * 72 / (0.55 * size)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def _band_alpha(n_lines: int) -> float:
    # overlapping bands of many estimators darken each other: fainter bands when there are many
    return 0.16 if n_lines <= 4 else 0.09


def _panel_grid(n_panels: int, *, width: float = 7.6, height: float = 4.6, legend_rows: int = 4):
    cols = min(n_panels, 2)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(width * cols, height * rows + 0.8 + 0.22 * legend_rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes[:n_panels])


def _finish_legend(fig: Figure, axes, own_ax: bool, band_label: str = "Monte Carlo 95% band (± 1.96 MCSE)"):
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    handles.append(Patch(facecolor="#777777", alpha=0.3, linewidth=0))
    labels.append(band_label)
    if own_ax:
        axes[0].legend(handles, labels, fontsize="small", loc="best", framealpha=0.85)
    else:
        # below the panels: a legend at the right would climb into the title
        width = fig.get_figwidth()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(2 if width < 10 else 3, len(labels)),
                   fontsize="small", frameon=False)
