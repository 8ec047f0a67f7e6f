"""The stress-test report: one self-contained HTML page and its Markdown twin, from one set of data.

:func:`report_data` turns the stress test's tables into plain values (headline sentences,
table rows with numbers formatted once); the jinja2 templates ``templates/stress_report.html.j2``
and ``templates/stress_report.md.j2`` lay them out.  Both documents show the same numbers.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from ._text import number as _f
from ._text import png_data_uri as _img
from .plots.stress import label

__all__ = ["write_report", "report_data", "VERDICT_WORDS"]

VERDICT_WORDS = {
    "holds": "holds",
    "breaks_at": "breaks at",
    "fails_at_zero": "fails at zero",
    "cannot_tell": "cannot tell",
    "not_applicable": "not applicable",
}
_DRIVER_WORDS = {"identification": "identification bias", "finite_sample": "finite-sample bias", "bias": "bias",
                 "coverage": "coverage", "rmse": "RMSE", "": ""}
_CHECK_WORDS = {"weak_first_stage": "first-stage F < 10", "overidentification": "overidentification test",
                "nonlinearity": "squares-only nonlinearity test",
                "quadratic": "full-quadratic falsification test (squares and cross-products)",
                "any_check": "any of them"}


def _env() -> Environment:
    return Environment(loader=PackageLoader("simulate", "templates"), autoescape=select_autoescape(["html.j2"]),
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _pm(v, s) -> str:
    return f"{_f(v)} ({_f(s, 2)})"


def _pct(v, s=None) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(v):
        return "–"
    txt = f"{100 * v:.1f}%"
    if s is not None and math.isfinite(float(s)):
        txt += f" ({100 * float(s):.1f})"
    return txt


def _verdict_text(r) -> str:
    v = r["verdict"]
    if v == "breaks_at":
        return f"breaks at {_f(r['breakdown'])}"
    return VERDICT_WORDS.get(v, v)


def _headline(sw, ver: pd.DataFrame, order: list[str]) -> str:
    """One sentence: the first IV estimator to break and why (or why none is shown to)."""
    v = ver[(ver.dial == sw.dial.key) & (ver.estimator != "ols")]
    severe = _f(sw.plan.axis_at(1.0))
    zero = v[v.verdict == "fails_at_zero"]
    breaks = v[v.verdict == "breaks_at"].copy()
    parts = []
    if len(breaks):
        breaks["rank"] = breaks.estimator.map({e: i for i, e in enumerate(order)})
        first = breaks.sort_values(["breakdown", "rank"]).iloc[0]
        how = ("exact" if first.driver == "identification" and first.breakdown == first.breakdown_exact
               else "Monte Carlo")
        txt = (f"{label(first.estimator)} breaks first: on {first.mediator} its "
               f"{_DRIVER_WORDS[first.driver]} passes the threshold at {sw.axis} = {_f(first.breakdown)} "
               f"({how}; severe value {severe})")
        if math.isfinite(first.checks_fire_at_breakdown):
            txt += (f"; at {_f(first.checks_fire_value)} the design's own checks fire in "
                    f"{_pct(first.checks_fire_at_breakdown, first.checks_fire_mcse)} of the replications")
        parts.append(txt)
        others = [label(e) for e in dict.fromkeys(breaks.estimator) if e != first.estimator]
        if others:
            parts.append(f"also breaking by the severe value: {', '.join(others)}")
    elif (v.verdict == "not_applicable").all() and len(v):
        parts.append(f"the dial cannot move any estimand in this design: {v.note.iloc[0]}")
    else:
        holds = sorted({label(e) for e in v[v.verdict == "holds"].estimator})
        tell = sorted({label(e) for e in v[v.verdict == "cannot_tell"].estimator})
        flat = sorted({label(e) for e in v[v.verdict == "not_applicable"].estimator})
        txt = f"no IV estimator is shown to break up to the severe value {severe}"
        if flat:
            txt += f"; the exact truth does not move along the dial for {', '.join(flat)} (not applicable)"
        if holds:
            txt += f"; demonstrably within the thresholds: {', '.join(holds)}"
        if tell:
            txt += f"; cannot tell: {', '.join(tell)}"
        parts.append(txt)
    if len(zero):
        parts.append(f"already failing where every assumption holds: "
                     f"{', '.join(sorted({label(e) for e in zero.estimator}))} (see the baseline)")
    s = "; ".join(parts)
    return s[0].upper() + s[1:] + "."


def report_data(result, out: Path) -> dict:
    """Everything the templates show, as plain strings and lists.

    Parameters
    ----------
    result : simulate.stress.StressResult
        The stress test's numbers: design, settings, sweeps, verdicts, measures, checks, exact curves,
        baseline, figures, timing and versions.
    out : Path
        The report's directory (named in the command that reproduces it).

    Returns
    -------
    dict
        The templates' variables.
    """
    ver = result.verdicts
    order = list(dict.fromkeys(ver.estimator)) if len(ver) else []
    iv = [e for e in order if e != "ols"]
    meds = list(result.base.mediator_names)
    st = result.settings
    return {"name": result.base.name, "description": result.base.description,
            "settings": _settings_rows(result, out), "design": _design_rows(result),
            "estimators": [label(e) for e in iv], "mediators": meds,
            "overview": [_overview_row(result, sw, iv, meds) for sw in result.sweeps],
            "baseline": _baseline_rows(result), "balanced_note": _balanced_note(result),
            "baseline_checks": [{"check": _CHECK_WORDS.get(k, k), "rate": _pct(v[0], v[1])}
                                for k, v in result.baseline_checks.items()],
            "sections": [_section(result, sw, order, meds) for sw in result.sweeps],
            "check_cols": list(_CHECK_WORDS.items()), "tolerance": f"{st.tolerance:.0%}",
            "floor": f"{st.coverage_floor:.0%}", "rmse_ratio": f"{st.rmse_ratio:g}"}


def _settings_rows(result, out: Path) -> list[tuple[str, str]]:
    """How the report was made: the command, replications, seed, thresholds, versions."""
    st = result.settings
    measures = result.measures
    command = f"simulate stress-test {result.design} --out {out} --jobs {st.jobs}"
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    passes = sorted({int(r) for r in measures.reps}) if len(measures) else []
    return [
        ("reproduce", command),
        ("replications per dial value", f"{st.reps} first, more where a verdict is undecided, up to "
                                        f"{st.max_reps} (run: {', '.join(map(str, passes))})"),
        ("seed", str(st.seed)),
        ("dial values", f"{st.steps} simulated, from 0 (the assumption holds) to the severe value; the exact "
                        f"part on {st.fine_count}"),
        ("bias tolerance", f"{st.tolerance:.0%} of the target where the assumption holds (LATE for binary "
                           "mediators, ATE for continuous ones)"),
        ("coverage floor", f"{st.coverage_floor:.0%} for the 95% intervals"),
        ("RMSE", f"fails beyond {st.rmse_ratio:g} times the best IV estimator's at the same dial value"),
        ("decided", "a Monte Carlo comparison only when its threshold lies outside the estimate +- 1.96 MCSE; "
                    "an exact one at once where the limit is a closed form or a quadrature (error 0), else "
                    f"beyond t(15) SEs of 16 batches of {st.truth_batches * st.truth_batch_sites:,} simulated "
                    "sites in all"),
        ("truth of each simulated cell", f"{st.truth_sites:,} simulated sites"),
        ("version", f"simulate {result.version} (code {result.code})"), ("made", f"{when}, {result.elapsed:.0f} s")]


def _design_rows(result) -> list[tuple[str, str]]:
    """The planned design: sites, sizes, arms, mediators, and each mediator's target and 2SLS limit."""
    base, exact, baseline = result.base, result.exact, result.baseline
    kinds = dict(zip(base.mediator_names, base.mediator_kind))
    e0 = exact[exact.t == 0] if len(exact) else exact
    rows = [("sites", str(base.n_sites)),
            ("persons per site", _sizes(base)),
            ("arms", f"{base.arms} (shares {', '.join(f'{s:g}' for s in base.arm_shares[0])})"),
            ("mediators", ", ".join(f"{n} ({k})" for n, k in zip(base.mediator_names, base.mediator_kind)))]
    for med in base.mediator_names:
        g = baseline[(baseline.mediator == med) & (baseline.estimator == "2sls")]
        tv = g.target_value.iloc[0] if len(g) else math.nan
        t = "LATE" if kinds[med] == "binary" else "ATE"
        lim = e0[(e0.mediator == med) & (e0.estimator == "2sls")].limit
        rows.append((f"target, {med}", f"{t} {_f(tv, 4)}; 2SLS large-sample limit "
                                       f"{_f(lim.iloc[0] if len(lim) else math.nan, 4)}"))
    return rows


def _overview_row(result, sw, iv: list[str], meds: list[str]) -> dict:
    """One dial's row of the overview: its verdict per IV estimator and mediator."""
    head = {"dial": sw.dial.label, "key": sw.dial.key, "title": sw.dial.title, "unit": sw.dial.unit}
    if sw.skipped is not None:
        return {**head, "skipped": sw.skipped, "path": "", "severe": "", "cells": []}
    ver = result.verdicts
    cells = []
    for est in iv:
        bits = []
        for med in meds:
            r = ver[(ver.dial == sw.dial.key) & (ver.estimator == est) & (ver.mediator == med)]
            if len(r):
                r = r.iloc[0]
                bits.append({"mediator": med, "verdict": r.verdict, "text": _verdict_text(r)})
        cells.append(bits)
    return {**head, "skipped": None, "path": sw.axis, "severe": _f(sw.plan.axis_at(1.0)), "cells": cells}


def _baseline_rows(result) -> list[dict]:
    """Every estimator where every assumption holds: bias, RMSE, coverage, power, width with their MCSEs."""
    rows = []
    for _, r in result.baseline.iterrows():
        rows.append({"estimator": label(r.estimator), "mediator": r.mediator,
                     "target": f"{r.target.upper()} {_f(r.target_value, 4)}",
                     "bias": _pm(r.bias, r.bias_mcse), "relative_bias": _pct(r.relative_bias / 100)
                     if math.isfinite(r.relative_bias) else "–",
                     "rmse": _pm(r.rmse, r.rmse_mcse), "coverage": _pct(r.coverage, r.coverage_mcse),
                     "power": _pct(r.power, r.power_mcse), "width": _f(r.width),
                     "ar_coverage": _ar_pct(r), "reps": str(int(r.reps))})
    return rows


def _ar_pct(r) -> str:
    """The coverage of the AR sets (conventional / site-clustered / jackknife, with MCSEs), or a dash (P > 1)."""
    a, b = getattr(r, "ar_coverage", math.nan), getattr(r, "ar_cluster_coverage", math.nan)
    j = getattr(r, "jar_coverage", math.nan)
    if not (math.isfinite(a) or math.isfinite(b) or math.isfinite(j)):
        return "–"
    return (f"{_pct(a, r.ar_coverage_mcse)} / {_pct(b, r.ar_cluster_coverage_mcse)} / "
            f"{_pct(j, getattr(r, 'jar_coverage_mcse', math.nan))}")


def _balanced_note(result) -> str:
    """A note where UJIVE and MBTSLS are equal by construction (every site x arm cell the same size)."""
    b = result.baseline
    share = b[b.estimator.isin(["ujive", "mbtsls"])].get("balanced_design_share")
    if share is not None and len(share) and (share == 1.0).all():
        return ("UJIVE and MBTSLS are equal by construction here: every site x arm cell has the same size "
                "(a balanced design), where both are the k-class estimator with kappa = 1 + (A - 1)/(n_s - A).")
    return ""


def _verdict_rows(v) -> list[dict]:
    return [{"estimator": label(r.estimator), "mediator": r.mediator, "verdict": r.verdict,
             "text": _verdict_text(r), "driver": _DRIVER_WORDS.get(r.driver if isinstance(r.driver, str) else "", ""),
             "exact": _f(r.breakdown_exact) if r.breakdown_exact == r.breakdown_exact else "",
             "mc": _f(r.breakdown_mc) if r.breakdown_mc == r.breakdown_mc else "",
             "note": r.note if isinstance(r.note, str) else "",
             "reference": r.estimator == "ols"} for _, r in v.iterrows()]


def _measure_tables(m, order: list[str], meds: list[str]) -> list[dict]:
    """Per mediator, the simulated measures of every estimator at every dial value."""
    tables = []
    for med in meds:
        rows = []
        for est in order:
            g = m[(m.estimator == est) & (m.mediator == med)].sort_values("t")
            for _, r in g.iterrows():
                rows.append({"estimator": label(est), "value": _f(r.value), "bias": _pm(r.bias, r.bias_mcse),
                             "identification": _f(r.identification_bias),
                             "finite_sample": _pm(r.finite_sample_bias, r.finite_sample_bias_mcse),
                             "rmse": _pm(r.rmse, r.rmse_mcse), "coverage": _pct(r.coverage, r.coverage_mcse),
                             "power": _pct(r.power, r.power_mcse), "width": _f(r.width),
                             "ar_coverage": _ar_pct(r), "reps": str(int(r.reps)), "reference": est == "ols"})
        if rows:
            t = m[m.mediator == med].target.iloc[0]
            tables.append({"mediator": med, "target": "LATE" if t == "late" else "ATE", "rows": rows})
    return tables


def _section(result, sw, order: list[str], meds: list[str]) -> dict:
    """One dial's section: its headline, figures, verdicts, measures and the design's checks."""
    sec = {"key": sw.dial.key, "label": sw.dial.label, "title": sw.dial.title, "meaning": sw.dial.meaning,
           "skipped": sw.skipped}
    if sw.skipped is not None:
        return sec
    c = result.checks[result.checks.dial == sw.dial.key]
    checks = []
    for value, g in c.groupby("value", sort=True):
        row = {"value": _f(value)}
        for _, r in g.iterrows():
            row[r.check] = _pct(r.rate, r.mcse)
        checks.append(row)
    sec.update({
        "path": sw.axis, "unit": sw.dial.unit, "also": sw.paths[1:],
        "dial_values": ", ".join(_f(x) for x in sw.dial_values), "changes": sw.changes,
        "headline": _headline(sw, result.verdicts, order),
        "figures": [{"name": p.name, "src": _img(p)} for p in result.figures.get(sw.dial.key, [])],
        "verdicts": _verdict_rows(result.verdicts[result.verdicts.dial == sw.dial.key]),
        "tables": _measure_tables(result.measures[result.measures.dial == sw.dial.key], order, meds),
        "checks": checks,
    })
    return sec


def _sizes(base) -> str:
    n = base.n_per_site
    if n and len(set(n)) == 1:
        return str(n[0])
    if getattr(base, "n_per_site_range", None):
        return f"{base.n_per_site_range[0]}-{base.n_per_site_range[1]}"
    return f"{min(n)}-{max(n)}"


def write_report(out: Path, result) -> Path:
    """Write ``out/report.html`` and ``out/report.md`` from :func:`report_data`; returns the HTML path."""
    out = Path(out)
    data = report_data(result, out)
    env = _env()
    env.filters["md"] = lambda s: str(s).replace("|", "\\|")
    (out / "report.html").write_text(env.get_template("stress_report.html.j2").render(**data), encoding="utf-8")
    (out / "report.md").write_text(env.get_template("stress_report.md.j2").render(**data), encoding="utf-8")
    return out / "report.html"
