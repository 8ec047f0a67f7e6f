"""The stress-test report: one self-contained HTML page and its Markdown twin, from one set of data.

:func:`report_data` turns the stress test's tables into plain values (headline sentences,
table rows with numbers formatted once); the jinja2 templates ``templates/stress_report.html.j2``
and ``templates/stress_report.md.j2`` lay them out.  Both documents show the same numbers.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

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
                "nonlinearity": "nonlinearity (falsification) test", "any_check": "any of them"}


def _env() -> Environment:
    return Environment(loader=PackageLoader("simulate", "templates"), autoescape=select_autoescape(["html.j2"]),
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _f(v, digits: int = 3) -> str:
    """A number in ``digits`` significant digits ("–" for NaN)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "" if v is None else str(v)
    if not math.isfinite(v):
        return "–"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.{max(1, digits - 1)}e}"
    return f"{v:.{digits}g}"


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


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def report_data(*, design: Path, base, settings, sweeps, verdicts, measures, checks, exact, baseline,
                baseline_checks, figures, elapsed: float, version: str, code: str, out: Path) -> dict:
    """Everything the templates show, as plain strings and lists."""
    ver = verdicts
    order = list(dict.fromkeys(ver.estimator)) if len(ver) else []
    iv = [e for e in order if e != "ols"]
    meds = list(base.mediator_names)
    kinds = dict(zip(base.mediator_names, base.mediator_kind))
    command = f"simulate stress-test {design} --out {out} --jobs {settings.jobs}"
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    passes = sorted({int(r) for r in measures.reps}) if len(measures) else []
    settings_rows = [
        ("reproduce", command),
        ("replications per dial value", f"{settings.reps} first, more where a verdict is undecided, up to "
                                        f"{settings.max_reps} (run: {', '.join(map(str, passes))})"),
        ("seed", str(settings.seed)),
        ("dial values", f"{settings.steps} simulated, from 0 (the assumption holds) to the severe value; the exact "
                        f"part on {settings.fine_count}"),
        ("bias tolerance", f"{settings.tolerance:.0%} of the target where the assumption holds (LATE for binary "
                           "mediators, ATE for continuous ones)"),
        ("coverage floor", f"{settings.coverage_floor:.0%} for the 95% intervals"),
        ("RMSE", f"fails beyond {settings.rmse_ratio:g} times the best IV estimator's at the same dial value"),
        ("decided", "a Monte Carlo comparison only when its threshold lies outside the estimate +- 1.96 MCSE; "
                    f"an exact one beyond t({settings.truth_batches - 1}) SEs of its {settings.truth_batches} "
                    f"batches of {settings.truth_batch_sites:,} simulated sites"),
        ("truth of each simulated cell", f"{settings.truth_sites:,} simulated sites"),
        ("version", f"simulate {version} (code {code})"), ("made", f"{when}, {elapsed:.0f} s")]
    e0 = exact[exact.t == 0] if len(exact) else exact
    design_rows = [("sites", str(base.n_sites)),
                   ("persons per site", _sizes(base)),
                   ("arms", f"{base.arms} (shares {', '.join(f'{s:g}' for s in base.arm_shares[0])})"),
                   ("mediators", ", ".join(f"{n} ({k})" for n, k in zip(meds, base.mediator_kind)))]
    for med in meds:
        g = baseline[(baseline.mediator == med) & (baseline.estimator == "2sls")]
        tv = g.target_value.iloc[0] if len(g) else math.nan
        t = "LATE" if kinds[med] == "binary" else "ATE"
        lim = e0[(e0.mediator == med) & (e0.estimator == "2sls")].limit
        design_rows.append((f"target, {med}", f"{t} {_f(tv, 4)}; 2SLS large-sample limit "
                                              f"{_f(lim.iloc[0] if len(lim) else math.nan, 4)}"))

    # the overview: one row per dial, one column per IV estimator
    overview = []
    for sw in sweeps:
        if sw.skipped is not None:
            overview.append({"dial": sw.dial.label, "key": sw.dial.key, "title": sw.dial.title, "skipped": sw.skipped,
                             "path": "", "unit": sw.dial.unit, "severe": "", "cells": []})
            continue
        cells = []
        for est in iv:
            bits = []
            for med in meds:
                r = ver[(ver.dial == sw.dial.key) & (ver.estimator == est) & (ver.mediator == med)]
                if len(r):
                    r = r.iloc[0]
                    bits.append({"mediator": med, "verdict": r.verdict, "text": _verdict_text(r)})
            cells.append(bits)
        overview.append({"dial": sw.dial.label, "key": sw.dial.key, "title": sw.dial.title, "skipped": None,
                         "path": sw.axis, "unit": sw.dial.unit, "severe": _f(sw.plan.axis_at(1.0)), "cells": cells})

    base_rows = []
    zero_state = {}
    first = next((sw for sw in sweeps if sw.skipped is None and not sw.changes), None)
    if first is not None:
        for _, r in ver[ver.dial == first.dial.key].iterrows():
            zero_state[(r.estimator, r.mediator)] = r
    for _, r in baseline.iterrows():
        base_rows.append({"estimator": label(r.estimator), "mediator": r.mediator,
                          "target": f"{r.target.upper()} {_f(r.target_value, 4)}",
                          "bias": _pm(r.bias, r.bias_mcse), "relative_bias": _pct(r.relative_bias / 100)
                          if math.isfinite(r.relative_bias) else "–",
                          "rmse": _pm(r.rmse, r.rmse_mcse), "coverage": _pct(r.coverage, r.coverage_mcse),
                          "power": _pct(r.power, r.power_mcse), "width": _f(r.width),
                          "reps": str(int(r.reps))})
    base_checks = [{"check": _CHECK_WORDS.get(k, k), "rate": _pct(v[0], v[1])} for k, v in baseline_checks.items()]

    sections = []
    for sw in sweeps:
        sec = {"key": sw.dial.key, "label": sw.dial.label, "title": sw.dial.title, "meaning": sw.dial.meaning,
               "skipped": sw.skipped}
        if sw.skipped is not None:
            sections.append(sec)
            continue
        v = ver[ver.dial == sw.dial.key]
        m = measures[measures.dial == sw.dial.key]
        c = checks[checks.dial == sw.dial.key]
        sec.update({
            "path": sw.axis, "unit": sw.dial.unit, "also": sw.paths[1:],
            "dial_values": ", ".join(_f(x) for x in sw.dial_values), "changes": sw.changes,
            "headline": _headline(sw, ver, order),
            "figures": [{"name": p.name, "src": _img(p)} for p in figures.get(sw.dial.key, [])],
            "verdicts": [{"estimator": label(r.estimator), "mediator": r.mediator, "verdict": r.verdict,
                          "text": _verdict_text(r), "driver": _DRIVER_WORDS.get(r.driver if isinstance(r.driver, str)
                                                                                else "", ""),
                          "exact": _f(r.breakdown_exact) if r.breakdown_exact == r.breakdown_exact else "",
                          "mc": _f(r.breakdown_mc) if r.breakdown_mc == r.breakdown_mc else "",
                          "note": r.note if isinstance(r.note, str) else "",
                          "reference": r.estimator == "ols"} for _, r in v.iterrows()],
            "tables": [],
            "checks": [],
        })
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
                                 "reps": str(int(r.reps)), "reference": est == "ols"})
            if rows:
                t = m[m.mediator == med].target.iloc[0]
                sec["tables"].append({"mediator": med, "target": "LATE" if t == "late" else "ATE", "rows": rows})
        for value, g in c.groupby("value", sort=True):
            row = {"value": _f(value)}
            for _, r in g.iterrows():
                row[r.check] = _pct(r.rate, r.mcse)
            sec["checks"].append(row)
        sections.append(sec)
    check_cols = [(k, w) for k, w in _CHECK_WORDS.items()]
    return {"name": base.name, "description": base.description, "settings": settings_rows,
            "design": design_rows, "estimators": [label(e) for e in iv], "mediators": meds,
            "overview": overview, "baseline": base_rows, "baseline_checks": base_checks, "sections": sections,
            "check_cols": check_cols, "tolerance": f"{settings.tolerance:.0%}",
            "floor": f"{settings.coverage_floor:.0%}", "rmse_ratio": f"{settings.rmse_ratio:g}"}


def _sizes(base) -> str:
    n = base.n_per_site
    if n and len(set(n)) == 1:
        return str(n[0])
    if getattr(base, "n_per_site_range", None):
        return f"{base.n_per_site_range[0]}-{base.n_per_site_range[1]}"
    return f"{min(n)}-{max(n)}"


def write_report(out: Path, **kwargs) -> Path:
    """Write ``out/report.html`` and ``out/report.md`` from the same data; returns the HTML path."""
    out = Path(out)
    data = report_data(out=out, **kwargs)
    env = _env()
    env.filters["md"] = lambda s: str(s).replace("|", "\\|")
    (out / "report.html").write_text(env.get_template("stress_report.html.j2").render(**data), encoding="utf-8")
    (out / "report.md").write_text(env.get_template("stress_report.md.j2").render(**data), encoding="utf-8")
    return out / "report.html"
