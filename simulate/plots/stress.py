"""The stress test's figures: per dial, bias and coverage of the IV estimators against the dial.

Bias panels (one per mediator) show the exact identification bias along the fine grid as a
line per distinct large-sample limit, the Monte Carlo total bias at each simulated value as
points with their 95% Monte Carlo intervals (+- 1.96 MCSE), and the tolerance band shaded.
Coverage panels show the coverage with its Monte Carlo intervals, the nominal level and the
floor.  OLS, confounded by design, is left to the tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .labels import ESTIMATOR_LABELS, ESTIMATOR_STYLES

__all__ = ["dial_figures", "label", "style"]

Z = 1.959963984540054
_TARGET = {"ate": "ATE", "late": "LATE"}


def label(estimator: str) -> str:
    """The readable name of an estimator."""
    return ESTIMATOR_LABELS.get(estimator, estimator).replace(" (site FE, confounded)", "")


def style(est: str) -> tuple[str, str, str]:
    """The colour, marker and line style of an estimator in the stress and sensitivity figures.

    Parameters
    ----------
    est : str
        An estimator's name.

    Returns
    -------
    tuple of str
        Its style from the registry (:data:`ESTIMATOR_STYLES`), or grey circles for an unknown name.
    """
    return ESTIMATOR_STYLES.get(est, ("#555555", "o", "-"))


def _offsets(n: int, span: float) -> np.ndarray:
    return (np.arange(n) - (n - 1) / 2) * span / max(n, 1)


def dial_figures(sw, measures: pd.DataFrame, exact: pd.DataFrame, verdicts: pd.DataFrame, folder: Path,
                 settings) -> list[Path]:
    """Write ``KEY_bias.png`` and ``KEY_coverage.png`` (and PDF with ``settings.pdf``); return the PNG paths."""
    key = sw.dial.key
    m = measures[(measures.dial == key) & (measures.estimator != "ols")]
    e = exact[(exact.dial == key) & (exact.estimator != "ols")]
    meds = list(dict.fromkeys(m.mediator))
    ests = list(dict.fromkeys(m.estimator))
    values = sorted(m.value.unique())
    span = (max(values) - min(values)) if len(values) > 1 else 1.0
    off = dict(zip(ests, _offsets(len(ests), 0.06 * span)))
    paths = []
    for measure in ("bias", "coverage"):
        fig = Figure(figsize=(max(9.0, 6.4 * len(meds)), 5.4), layout="constrained")
        axes = fig.subplots(1, len(meds), squeeze=False).ravel()
        for ax, med in zip(axes, meds):
            mm = m[m.mediator == med]
            target = mm.target.iloc[0]
            tol = float(verdicts[(verdicts.dial == key) & (verdicts.mediator == med)].tolerance.iloc[0])
            if measure == "bias":
                ax.axhspan(-tol, tol, color="#dddddd", alpha=0.6, lw=0)
                ax.axhline(0, color="#888888", lw=0.8)
                drawn = {}
                for est in ests:
                    g = e[(e.estimator == est) & (e.mediator == med)].sort_values("t")
                    if g.empty or not np.isfinite(g.limit).any():
                        continue
                    sig = tuple(np.round(g.identification_bias.to_numpy(float), 9))
                    drawn.setdefault(sig, (g, []))[1].append(est)
                for g, owners in drawn.values():
                    c, _, _ = style(owners[0])
                    ax.plot(g.value, g.identification_bias, color=c, lw=1.6, alpha=0.8)
            else:
                ax.axhline(0.95, color="#888888", lw=0.8, ls="--")
                ax.axhline(settings.coverage_floor, color="#c0392b", lw=1.2)
            for est in ests:
                g = mm[mm.estimator == est].sort_values("value")
                y = g[measure].to_numpy(float)
                if not np.isfinite(y).any():
                    continue
                err = Z * g[f"{measure}_mcse"].to_numpy(float)
                c, mk, _ = style(est)
                ax.errorbar(g.value + off[est], y, yerr=err, fmt=mk, color=c, ms=5, capsize=2, lw=1)
            ax.set_xlabel(f"{sw.axis}  [{sw.dial.unit}]", fontsize=8)
            if measure == "bias":
                ax.set_ylabel(f"bias against the {_TARGET.get(target, target)} of {med}")
                lo, hi = ax.get_ylim()
                cap = max(6 * tol, 2 * float(np.nanmax(np.abs(e[e.mediator == med].identification_bias))) if
                          len(e[e.mediator == med]) and np.isfinite(e[e.mediator == med].identification_bias).any()
                          else 6 * tol)
                ax.set_ylim(max(lo, -cap), min(hi, cap))
            else:
                ax.set_ylabel(f"coverage of the 95% interval ({_TARGET.get(target, target)} of {med})")
                lo, _ = ax.get_ylim()
                ax.set_ylim(max(lo, 0.0), 1.01)
            ax.set_title(med)
            ax.grid(alpha=0.3)
        handles = [Line2D([], [], color=style(x)[0], marker=style(x)[1], ls="none", label=label(x)) for x in ests]
        if measure == "bias":
            handles += [Line2D([], [], color="#555555", lw=1.6, label="exact identification bias (limit - target)"),
                        Patch(color="#dddddd", label=f"tolerance (+-{settings.tolerance:.0%} of the target)")]
        else:
            handles += [Line2D([], [], color="#888888", ls="--", label="nominal 95%"),
                        Line2D([], [], color="#c0392b", label=f"floor {settings.coverage_floor:.0%}")]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=8)
        fig.suptitle(f"{sw.dial.label}: {sw.dial.title.lower()}\n{measure} of the IV estimators (points: Monte "
                     "Carlo, bars +-1.96 MCSE)", fontsize=10)
        stem = folder / f"{key}_{measure}"
        fig.savefig(f"{stem}.png", dpi=120)
        if settings.pdf:
            fig.savefig(f"{stem}.pdf")
        paths.append(Path(f"{stem}.png"))
    return paths
