"""The sensitivity report: ``report.html`` (self-contained), ``report.md``, figures and tables, from one set of data.

:func:`report_data` turns a :class:`~simulate.sensitivity.core.SensitivityResult` into plain values
(sentences and table rows with numbers formatted once); the jinja2 templates
``templates/sensitivity_report.html.j2`` and ``templates/sensitivity_report.md.j2`` lay them out.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from .._text import number as _f
from .._text import png_data_uri as _img
from ..plots.stress import label, style

__all__ = ["write_report", "report_data", "sentence", "PHRASES", "NOUNS", "figures"]

PHRASES = {
    "spillover": "a spillover onto controls of {v} times the study's ITT (per unit share treated)",
    "direct_effect": "a direct effect of the offer of {v} times the study's ITT on the outcome",
    "outcome_curvature": "an outcome curvature that changes the mediator's effect by a share {v} per SD of the "
                         "mediator",
    "mediator_paths": "a path between the mediators of {v} times the downstream mediator's compliance",
    "selection": "selection into treatment creating an imbalance in the untreated outcome of about {v} times the "
                 "study's ITT",
    "within_site_correlation": "a within-site correlation of {v} between compliance and effect",
    "defiers": "a defier share of {v}",
    "between_site_correlation": "a between-site correlation of {v} between compliance and effect",
    "nonlinear_dependence": "a nonlinear between-site dependence of lambda = {v}",
}
"""The noun phrase of each dial's value in the report's sentences."""

NOUNS = {
    "spillover": "spillover onto controls",
    "direct_effect": "direct effect of the offer",
    "outcome_curvature": "outcome curvature",
    "mediator_paths": "path between the mediators",
    "selection": "selection into treatment",
    "within_site_correlation": "within-site correlation of compliance and effect",
    "defiers": "defier share",
    "between_site_correlation": "between-site correlation of compliance and effect",
    "nonlinear_dependence": "nonlinear between-site dependence",
}
"""The noun of each dial in "No ... within the range" sentences."""

_MAIN = ("2sls", "liml", "ujive", "between_ols", "wald")


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _range_words(r) -> str:
    return f"{_f(r['range_low'], 2)} to {_f(r['range_high'], 2)}"


def sentence(r) -> str:
    """The breakdown values of one breakdown row in plain words.

    Parameters
    ----------
    r : mapping
        A row of ``SensitivityResult.breakdown``.

    Returns
    -------
    str
        E.g. "a between-site correlation of 0.31 between compliance and effect would move 2SLS (x) by its own 95%
        interval; 0.58 would explain it away."; a value not reached is said in words, never as a number.
    """
    phrase = PHRASES.get(r["dial"], r["dial"] + " of {v}")
    who = f"{label(r['estimator'])} ({r['mediator']})"
    ci, zero = r["breakdown_ci"], r["breakdown_zero"]
    if not _finite(ci) and not _finite(zero):
        note = r.get("note", "")
        if isinstance(note, str) and "no exact limit" in note:
            return f"{who}: no large-sample limit to sweep ({note.split('no exact limit: ', 1)[-1]})."
        what = NOUNS.get(r["dial"], r["dial"].replace("_", " "))
        return (f"No {what} within the range ({_range_words(r)}) would move {who} by its own 95% interval or explain "
                "it away.")
    parts = []
    if _finite(ci):
        parts.append(f"{phrase.format(v=_f(ci, 2))} would move {who} by its own 95% interval")
    else:
        parts.append(f"no value within the range ({_range_words(r)}) would move {who} by its own 95% interval")
    if _finite(zero):
        parts.append(f"{_f(zero, 2)} would explain it away" if _finite(ci) else
                     f"{phrase.format(v=_f(zero, 2))} would explain it away")
    else:
        parts.append(f"explaining it away cannot be reached within the range ({_range_words(r)})")
    s = "; ".join(parts) + "."
    return s[0].upper() + s[1:]


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def figures(res, folder: Path) -> dict[str, list[Path]]:
    """Draw the dial curves (one figure per swept assumption) and the two contour plots into ``folder``.

    Parameters
    ----------
    res : SensitivityResult
        The analysis.
    folder : Path
        Where the PNG files go (created).

    Returns
    -------
    dict
        Figure paths per dial key, and under ``"contour_ix"`` / ``"contour_v"``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {}
    meds = list(res.settings["mediators"])
    for ds in res.dials:
        if ds.skipped is not None:
            continue
        out[ds.key] = [_dial_figure(plt, res, ds, meds, folder)]
    for name, con in res.contours.items():
        if isinstance(con, str):
            continue
        out[f"contour_{name}"] = [_contour_figure(plt, name, con, med, folder) for med in con["mediators"]]
    return out


def _dial_figure(plt, res, ds, meds: list[str], folder: Path) -> Path:
    """One swept assumption: the bias-adjusted estimates against the dial, a panel per mediator."""
    c = res.curves
    g = c[c.dial == ds.key]
    fig, axes = plt.subplots(1, len(meds), figsize=(5.2 * len(meds), 3.8), squeeze=False)
    for ax, med in zip(axes[0], meds):
        h = res.breakdown[(res.breakdown.dial == ds.key) & (res.breakdown.mediator == med)
                          & (res.breakdown.estimator == "2sls")]
        for est in _MAIN:
            e = g[(g.estimator == est) & (g.mediator == med)].sort_values("u")
            if not len(e) or not np.isfinite(e.adjusted.to_numpy(float)).any():
                continue
            color, _, ls = style(est)
            ax.plot(e.u, e.adjusted, color=color, ls=ls, label=label(est))
        if len(h):
            est, hw = float(h.estimate.iloc[0]), float(h.ci_halfwidth.iloc[0])
            ax.axhspan(est - hw, est + hw, color="#999999", alpha=0.18, label="2SLS estimate +- half-width")
            ax.axhline(est, color="#555555", lw=0.8)
        ax.axhline(0, color="#d62728", ls="--", lw=1.2, label="zero")
        ax.axvline(0, color="#bbbbbb", lw=0.6)
        ax.set_xlabel(ds.range.axis if len(ds.range.axis) < 70 else ds.range.axis[:67] + "...", fontsize=8)
        ax.set_ylabel(f"bias-adjusted estimate ({med})", fontsize=8)
        ax.set_title(f"{ds.assumption.label}: {med}", fontsize=9)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    p = folder / f"{ds.key}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def _contour_figure(plt, name: str, con: dict, med: str, folder: Path) -> Path:
    """One contour plot of the bias-adjusted 2SLS estimate over two dials, for one mediator."""
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    z = con["adjusted"][med]
    e, hw = con["estimate"][med], con["halfwidth"][med]
    X, Y = np.meshgrid(con["x"], con["y"])
    cs = ax.contour(X, Y, z, levels=12, colors="#444444", linewidths=0.7)
    ax.clabel(cs, fontsize=7, fmt="%.3g")
    if np.nanmin(z) < 0 < np.nanmax(z):
        zc = ax.contour(X, Y, z, levels=[0], colors="#d62728", linewidths=2, linestyles="--")
        ax.clabel(zc, fmt={0: "0"}, fontsize=8)
    for lv in (e - hw, e + hw):
        if np.nanmin(z) < lv < np.nanmax(z):
            ax.contour(X, Y, z, levels=[lv], colors="#1f77b4", linewidths=1.2, linestyles=":")
    ax.plot([0], [0], marker="^", color="black", ms=8)
    ax.annotate(f"study: {e:.3g}", (0, 0), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel(f"{con['x_label']}: {con['x_unit']}"[:90], fontsize=8)
    ax.set_ylabel(f"{con['y_label']}: {con['y_unit']}"[:90], fontsize=8)
    ax.set_title(f"bias-adjusted 2SLS estimate ({med}); red: zero, blue: estimate +- half-width", fontsize=8)
    fig.tight_layout()
    p = folder / f"contour_{name}_{med}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


# ---------------------------------------------------------------------------
# Report data
# ---------------------------------------------------------------------------


def _pct(v, s=None) -> str:
    if not _finite(v):
        return "–"
    txt = f"{100 * float(v):.1f}%"
    if _finite(s):
        txt += f" ({100 * float(s):.1f})"
    return txt


def report_data(res, figs: dict[str, list[Path]]) -> dict:
    """Plain values for the templates.

    Parameters
    ----------
    res : SensitivityResult
        The analysis.
    figs : dict
        The figures of :func:`figures`.

    Returns
    -------
    dict
        What ``sensitivity_report.*.j2`` read.
    """
    s = res.settings
    rows = _dial_rows(res, figs)
    base, checks0 = _baseline(res.monte_carlo)
    return {"title": s.get("title") or "the study", "n": s["n"], "n_sites": s["n_sites"], "n_arms": s["n_arms"],
            "arms": ", ".join(map(str, s.get("arms", []))), "columns": s, "estimates": _estimate_rows(res.analysis),
            "diagnostics": _diagnostics(res.analysis), "not_identified": res.not_identified, "dials": rows,
            "table": _breakdown_table(res.breakdown), "baseline": base, "baseline_checks": checks0,
            "contours": _contour_rows(res, figs), "reps": s["reps"], "grid": s["grid"], "command": _command(s),
            "headline": [x for r in rows if r["skipped"] is None for x in r["sentences"]]}


def _estimate_rows(a: pd.DataFrame) -> list[dict]:
    """The study's estimates, one row per estimator x mediator (the direct effect left out)."""
    return [{"estimator": label(r.estimator), "mediator": r.mediator, "estimate": _f(r.estimate, 4),
             "ci": f"[{_f(r.conf_low, 4)}, {_f(r.conf_high, 4)}]",
             "halfwidth": _f((r.conf_high - r.conf_low) / 2, 3), "status": r.status}
            for _, r in a[a.mediator != "direct_effect"].iterrows()]


def _diagnostics(a: pd.DataFrame) -> list[str]:
    """The study's own checks in words: first-stage F per mediator, overidentification, nonlinearity."""
    first = a.iloc[0]
    diag = [f"first-stage F ({r.mediator}): {_f(r.first_stage_f)}; conditional F: {_f(r.conditional_f)}"
            for _, r in a.drop_duplicates("mediator").iterrows() if r.mediator != "direct_effect"]
    diag.append(f"overidentification (Sargan, 2SLS): p = {_f(first.overid_p)}")
    diag.append(f"nonlinearity of the between-site relation (falsification test): p = {_f(first.nonlinearity_p)}")
    return diag


def _dial_rows(res, figs: dict[str, list[Path]]) -> list[dict]:
    """One entry per assumption: what it means, its range, its breakdown sentences and figures."""
    b = res.breakdown
    rows = []
    for ds in res.dials:
        row = {"label": ds.assumption.label, "title": ds.assumption.title, "meaning": ds.assumption.meaning,
               "skipped": ds.skipped, "key": ds.key, "changes": ds.changes, "notes": ds.notes}
        if ds.skipped is None:
            g = b[(b.dial == ds.key) & (b.estimator == "2sls")]
            row["unit"] = ds.range.unit
            row["range"] = _range_words(g.iloc[0]) if len(g) else ""
            row["sentences"] = [sentence(r) for _, r in g.iterrows()]
            row["figures"] = [{"name": p.name, "src": _img(p)} for p in figs.get(ds.key, [])]
        rows.append(row)
    return rows


def _breakdown_table(b: pd.DataFrame) -> list[dict]:
    """The breakdown table's cells, formatted (with the Monte Carlo numbers at each breakdown value)."""
    table = []
    for _, r in b.iterrows():
        table.append({"assumption": r.numeral, "dial": r.dial, "estimator": label(r.estimator), "mediator": r.mediator,
                      "estimate": _f(r.estimate, 4), "halfwidth": _f(r.ci_halfwidth),
                      "ci": _f(r.breakdown_ci) if _finite(r.breakdown_ci) else "not reached within the range",
                      "zero": _f(r.breakdown_zero) if _finite(r.breakdown_zero) else "not reached within the range",
                      "bias": _f(r.bias_at_breakdown) + (f" ({_f(r.bias_mcse_at_breakdown, 2)})"
                                                          if _finite(r.bias_mcse_at_breakdown) else ""),
                      "coverage": _pct(r.coverage_at_breakdown, r.coverage_mcse_at_breakdown),
                      "rmse": _f(r.rmse_at_breakdown) + (f" ({_f(r.rmse_mcse_at_breakdown, 2)})"
                                                          if _finite(r.rmse_mcse_at_breakdown) else ""),
                      "detect": _pct(r.detect_rate_at_breakdown, r.detect_mcse_at_breakdown),
                      "each": "; ".join(_pct(r[f"{c}_at_breakdown"], r[f"{c}_mcse_at_breakdown"]) for c in
                                        ("weak_first_stage", "overidentification", "nonlinearity")),
                      "mc_value": _f(r.mc_value), "reference": r.estimator == "ols"})
    return table


def _baseline(mc: pd.DataFrame) -> tuple[list[dict], dict]:
    """The Monte Carlo cell at no violation: each estimator's bias, coverage, RMSE; the checks' rates."""
    base = []
    if not len(mc):
        return base, {}
    m0 = mc[mc.dial == "none"]
    for _, r in m0.iterrows():
        base.append({"estimator": label(r.estimator), "mediator": r.mediator,
                     "bias": f"{_f(r.bias)} ({_f(r.bias_mcse, 2)})",
                     "coverage": _pct(r.coverage, r.coverage_mcse), "rmse": f"{_f(r.rmse)} ({_f(r.rmse_mcse, 2)})",
                     "reps": int(r.reps)})
    checks0 = {k: _pct(m0[f"{k}_rate"].iloc[0], m0[f"{k}_mcse"].iloc[0]) for k in
               ("weak_first_stage", "overidentification", "nonlinearity", "any_check") if f"{k}_rate" in m0}
    return base, checks0


def _contour_rows(res, figs: dict[str, list[Path]]) -> list[dict]:
    """The two contour sections: title, why one is missing, figures."""
    contours = []
    for name, title in (("ix", "Between-site independence (ix) against a mean direct effect (ii)"),
                        ("v", "Parallel mediators (v) against a mean direct effect (ii)")):
        con = res.contours.get(name)
        contours.append({"title": title, "why": con if isinstance(con, str) else None,
                         "figures": [{"name": p.name, "src": _img(p)} for p in figs.get(f"contour_{name}", [])]})
    return contours


def _command(s: dict) -> str:
    """The command line that reproduces the analysis."""
    return ("simulate sensitivity DATA.csv --site " + s["site"] + " --treatment " + s["treatment"]
            + "".join(f" --mediator {m}" for m in s["mediators"]) + f" --outcome {s['outcome']} --reps {s['reps']}"
            + f" --seed {s['seed']} --out DIR")


def _write_tables(res, out: Path) -> None:
    t = out / "tables"
    t.mkdir(parents=True, exist_ok=True)
    res.breakdown.to_csv(t / "breakdown.csv", index=False)
    res.curves.to_csv(t / "curves.csv", index=False)
    res.analysis.to_csv(t / "analysis.csv", index=False)
    res.monte_carlo.to_csv(t / "monte_carlo.csv", index=False)
    rows = []
    for name, con in res.contours.items():
        if isinstance(con, str):
            continue
        for med in con["mediators"]:
            z = con["adjusted"][med]
            for j, yv in enumerate(con["y"]):
                for i, xv in enumerate(con["x"]):
                    rows.append({"contour": name, "mediator": med, "x": xv, "y": yv, "adjusted_2sls": z[j, i]})
    pd.DataFrame(rows, columns=["contour", "mediator", "x", "y", "adjusted_2sls"]).to_csv(t / "contours.csv",
                                                                                          index=False)
    (out / "scenario.toml").write_text(res.scenario_toml, encoding="utf-8")


def write_report(res, out: Path) -> Path:
    """Write ``out/report.html``, ``out/report.md``, ``out/figures/`` and ``out/tables/``.

    Parameters
    ----------
    res : SensitivityResult
        The analysis.
    out : Path
        The output folder (created).

    Returns
    -------
    Path
        ``out/report.html``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_tables(res, out)
    figs = figures(res, out / "figures")
    data = report_data(res, figs)
    env = Environment(loader=PackageLoader("simulate", "templates"), autoescape=select_autoescape(["html.j2"]),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["md"] = lambda s: str(s).replace("|", "\\|")
    md = dict(data)
    md["dials"] = [dict(r, figures=[{"name": f["name"], "src": f"figures/{f['name']}"} for f in r.get("figures", [])])
                   for r in data["dials"]]
    md["contours"] = [dict(c, figures=[{"name": f["name"], "src": f"figures/{f['name']}"} for f in c["figures"]])
                      for c in data["contours"]]
    (out / "report.html").write_text(env.get_template("sensitivity_report.html.j2").render(**data), encoding="utf-8")
    (out / "report.md").write_text(env.get_template("sensitivity_report.md.j2").render(**md), encoding="utf-8")
    return out / "report.html"
