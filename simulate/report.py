"""The stress-test report: one self-contained HTML page and its Markdown twin."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import importlib
from pathlib import Path

import pandas as pd

__all__ = ["write_report"]

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.bad { background: #fbe3d6; } td.good { background: #e4f1e4; } td.na { color: #888; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
code, pre { background: #f6f6f6; padding: .1em .3em; }
.meaning { font-style: italic; }
"""

_CHECK = """
<script>
// Marks the page once every figure has loaded (used by the rendering test; harmless otherwise).
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures-total', imgs.length);
  document.body.setAttribute('data-figures-loaded', ok);
});
</script>
"""


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _design_lines(base, truth) -> list[tuple[str, str]]:
    sizes = (f"{base.n_per_site[0]}" if base.n_per_site and len(set(base.n_per_site)) == 1 else
             f"{base.n_per_site_range[0]}-{base.n_per_site_range[1]}" if base.n_per_site_range else
             f"{min(base.n_per_site)}-{max(base.n_per_site)}")
    shares = ", ".join(f"{s:g}" for s in base.arm_shares[0])
    meds = ", ".join(f"{n} ({k})" for n, k in zip(base.mediator_names, base.mediator_kind))
    rows = [("sites", str(base.n_sites)), ("persons per site", sizes),
            ("arms", f"{base.arms} (shares {shares}; {base.assignment} randomization)"),
            ("mediators", meds)]
    for p, name in enumerate(base.mediator_names):
        late = truth.late[p]
        txt = f"ATE {truth.ate[p]:.4g}"
        if late == late:
            txt += f", LATE {late:.4g}"
        txt += f"; 2SLS limit {truth.limit_2sls[p]:.4g}"
        rows.append((f"truth, {name}", txt))
    return rows


def _overview(results, estimators) -> pd.DataFrame:
    rows = []
    for sw, _, ver, _ in results:
        if sw.skipped is not None:
            continue
        row = {"assumption": sw.dial.assumption}
        for est in estimators:
            v = ver[ver.estimator == est]
            firsts = [x for x in v.first_threshold if x is not None and x == x]
            row[est] = "none" if not firsts else f"{min(firsts, key=lambda x: sw.values[0].index(x)):.3g}"
        rows.append(row)
    return pd.DataFrame(rows)


def write_report(out: Path, *, design: Path, base, settings, results, elapsed: float, version: str,
                 code: str) -> Path:
    """Write ``out/report.html`` and ``out/report.md``; returns the HTML path."""
    truth_mod = importlib.import_module("simulate.truth")
    truth = truth_mod.truth(base, n_sites=settings.truth_sites)
    estimators = []
    for _, _, ver, _ in results:
        if ver is not None:
            estimators = list(dict.fromkeys(ver.estimator))
            break
    command = f"simulate stress-test {design} --out {out} --jobs {settings.jobs}"
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    settings_rows = [
        ("reproduce", f"<code>{html.escape(command)}</code>"),
        ("replications per dial value", str(settings.reps)), ("seed", str(settings.seed)),
        ("dial values", f"{settings.steps}, from 0 (the assumption holds) to the severe value"),
        ("bias tolerance", f"{settings.tolerance:.0%} of the target effect, beyond 1.96 Monte Carlo SEs"),
        ("coverage floor", f"{settings.coverage_floor:.0%} (95% intervals), below by more than 1.96 MCSE"),
        ("truth", f"{settings.truth_sites:,} simulated sites per grid cell"),
        ("version", f"simulate {version} (code {code})"), ("made", f"{when}, {elapsed:.0f} s")]
    overview = _overview(results, estimators)

    # ---- HTML ----
    h = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Stress test: {html.escape(base.name)}"
         f"</title><style>{_CSS}</style></head><body>",
         f"<h1>Stress test of the design “{html.escape(base.name)}”</h1>",
         "<p>Each assumption of the founding paper (Reardon &amp; Raudenbush 2013) is made to fail by degrees, "
         "from zero (it holds) to a severe value, and every estimator is run on the same simulated trials. "
         "A verdict names the smallest dial value at which an estimator's bias exceeds the tolerance or its "
         "coverage falls below the floor, with the Monte Carlo error taken into account.</p>",
         "<h2>Settings</h2><table>"]
    h += [f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in settings_rows]
    h.append("</table><h2>The design</h2><table>")
    h += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _design_lines(base, truth)]
    h.append("</table>")
    if base.description:
        h.append(f"<p>{html.escape(base.description)}</p>")
    h.append("<h2>Overview: the first dial value at which each estimator fails</h2>")
    h.append("<p>“none”: no threshold reached up to the severe value; 0: fails already where the assumption "
             "holds (in this design, at this sample size).</p>")
    h.append(_html_table(overview, mark=True))
    for sw, summary, ver, figs in results:
        h.append(f"<h2>{html.escape(sw.dial.assumption)}: {html.escape(sw.dial.title)}</h2>")
        if sw.skipped is not None:
            h.append(f"<p class='na'>Not swept: {html.escape(sw.skipped)}.</p>")
            continue
        h.append(f"<p class='meaning'>What it means in the study: {html.escape(sw.dial.meaning)}.</p>")
        vals = ", ".join(f"{v:.3g}" for v in sw.values[0])
        h.append(f"<p>Dial <code>{html.escape(sw.axis)}</code> = {vals}"
                 + (f" (with {', '.join(f'<code>{html.escape(p)}</code>' for p in sw.paths[1:])} in step)"
                    if len(sw.paths) > 1 else "") + ".</p>")
        for c in sw.changes:
            h.append(f"<p>For this sweep: {html.escape(c)}.</p>")
        h.append(_sentence_html(sw, ver, settings))
        for f in figs:
            h.append(f"<figure>{_img(f)}</figure>")
        h.append(_html_table(ver[["estimator", "mediator", "target", "verdict"]]))
    h.append(_CHECK)
    h.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(h), encoding="utf-8")

    # ---- Markdown ----
    m = [f"# Stress test of the design “{base.name}”", "",
         "Each assumption of the founding paper (Reardon & Raudenbush 2013) is made to fail by degrees, from zero "
         "(it holds) to a severe value; every estimator runs on the same simulated trials.", "", "## Settings", "",
         "| setting | value |", "| --- | --- |"]
    m += [f"| {k} | {_strip(v)} |" for k, v in settings_rows]
    m += ["", "## The design", "", "| | |", "| --- | --- |"]
    m += [f"| {k} | {v} |" for k, v in _design_lines(base, truth)]
    m += ["", "## Overview: the first dial value at which each estimator fails", "", _md_table(overview), ""]
    for sw, summary, ver, figs in results:
        m += [f"## {sw.dial.assumption}: {sw.dial.title}", ""]
        if sw.skipped is not None:
            m += [f"Not swept: {sw.skipped}.", ""]
            continue
        m += [f"*What it means in the study:* {sw.dial.meaning}.", "",
              f"Dial `{sw.axis}` = {', '.join(f'{v:.3g}' for v in sw.values[0])}.", ""]
        m += [f"For this sweep: {c}." for c in sw.changes]
        m += [_strip(_sentence_html(sw, ver, settings)), ""]
        m += [f"![{f.stem}](figures/{f.name})" for f in figs]
        m += ["", _md_table(ver[["estimator", "mediator", "target", "verdict"]]), ""]
    (out / "report.md").write_text("\n".join(m), encoding="utf-8")
    return path


def _sentence_html(sw, ver, settings) -> str:
    """A plain sentence: which estimators break first, and from where."""
    bad = ver[ver.first_threshold.notna()]
    robust = sorted(set(ver.estimator) - set(bad.estimator))
    if bad.empty:
        return (f"<p>No estimator reached a threshold up to {sw.values[0][-1]:.3g}: within this range the violation "
                "does not bias any estimator by more than the tolerance.</p>")
    order = bad.assign(pos=[sw.values[0].index(v) for v in bad.first_threshold]).sort_values("pos")
    first = order.iloc[0]
    txt = (f"<p>{html.escape(first.estimator)} breaks first ({html.escape(first.mediator)}: "
           f"{html.escape(first.verdict)}).")
    if robust:
        txt += f" Still within tolerance at {sw.values[0][-1]:.3g}: {html.escape(', '.join(robust))}."
    return txt + "</p>"


def _strip(s: str) -> str:
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", s)).replace("|", "\\|")


def _html_table(df: pd.DataFrame, mark: bool = False) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns) + "</tr>"]
    for _, r in df.iterrows():
        cells = []
        for c in df.columns:
            v = str(r[c])
            cls = ""
            if mark and c != "assumption":
                cls = " class='good'" if v == "none" else " class='bad'"
            cells.append(f"<td{cls}>{html.escape(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(nothing swept)"
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])
