"""Analyse a real multisite dataset with every MSMM-IV estimator and diagnostic.

``analyze(frame, site=..., treatment=..., mediators=[...], outcome=...)`` maps site
labels to codes 0..K-1 and sortable treatment labels to ordered arms 0..L (the
smallest label is the control arm 0), validates the data with one-line errors, and
returns the tidy frame of :func:`simulate.estimators.estimate` (the columns of
:data:`simulate.estimators.ANALYSIS_COLUMNS`, the analysis side of the one row schema
:data:`simulate.estimators.COLUMNS`).

The command ``simulate analyze FILE.csv --site COL --treatment COL --mediator COL
[--mediator COL ...] --outcome COL [--json]`` prints a readable table (or JSON
records). Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import SimulateError
from .estimators import ESTIMATORS, estimate, unknown_estimator_message
from .estimators.inference import jackknife_ar, jackknife_ar_set

JSON_FIELDS = (
    "estimator",
    "mediator",
    "estimate",
    "se_conventional",
    "se_robust",
    "conf_low",
    "conf_high",
    "p_value",
    "std_error",
    "se_type",
    "se_hc1",
    "se_cluster",
    "se_many_instrument",
    "se_heterogeneity",
    "status",
    "first_stage_f",
    "conditional_f",
    "se_heterogeneity_jive",
    "se_many_instrument_complete",
    "effect_sd",
    "ar_stat",
    "ar_p",
    "ar_cluster_stat",
    "ar_cluster_p",
    "ar_low",
    "ar_high",
    "ar_set_kind",
    "ar_cluster_low",
    "ar_cluster_high",
    "ar_cluster_set_kind",
    "balanced_design",
)
"""Fields of each ``--json`` record (the first eight are the contract)."""

WEAK_F = 10.0
"""The weak-instrument rule of :func:`weak_instrument_warning`: a (conditional) first-stage F below this
(Staiger & Stock 1997's rule of thumb; for P > 1 the Sanderson-Windmeijer conditional F of each mediator)."""


class AnalysisError(SimulateError):
    """Invalid real data (missing column, non-numeric value, NaN, a one-arm site...)."""


def _label(x) -> str:
    """A label as the user wrote it: strings quoted, numbers plain (no numpy repr)."""
    x = x.item() if isinstance(x, np.generic) else x
    return repr(x) if isinstance(x, str) else str(x)


def _ordered_codes(values: pd.Series, what: str):
    """Codes 0..m-1 in sorted order of the labels, and the sorted labels."""
    try:
        labels = np.sort(pd.unique(values))
    except TypeError as exc:
        raise AnalysisError(f"{what} column {values.name!r} has labels that cannot be sorted: {exc}") from None
    codes = np.searchsorted(labels, values.to_numpy())
    return codes.astype(np.int64), labels


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    s = frame[column]
    if s.dtype == bool:
        return s.to_numpy(dtype=np.float64)
    if not pd.api.types.is_numeric_dtype(s):
        converted = pd.to_numeric(s, errors="coerce")
        bad = converted.isna() & s.notna()
        if bad.any():
            row = bad.to_numpy().nonzero()[0][0]
            raise AnalysisError(
                f"column {column!r} is not numeric: value {s.iloc[row]!r} in row {row + 1}"
            )
        s = converted
    values = s.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values[~np.isnan(values)])):
        raise AnalysisError(f"column {column!r} has infinite values")
    return values


def _check_columns(frame, site: str, treatment: str, mediators, outcome: str) -> list[str]:
    """The mediator columns as a list, after checking that every column exists once and has no missing value."""
    if not isinstance(frame, pd.DataFrame):
        raise AnalysisError("frame must be a pandas DataFrame")
    mediators = [mediators] if isinstance(mediators, str) else list(mediators)
    if not mediators:
        raise AnalysisError("at least one mediator column is needed")
    columns = [site, treatment, *mediators, outcome]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AnalysisError(
            f"column(s) {', '.join(repr(c) for c in missing)} not found; "
            f"available: {', '.join(map(str, frame.columns))}"
        )
    if len(set(columns)) != len(columns):
        raise AnalysisError(f"a column is used twice: {columns}")
    if len(frame) == 0:
        raise AnalysisError("the data have no rows")
    for c in columns:
        n_missing = int(frame[c].isna().sum())
        if n_missing:
            first = int(frame[c].isna().to_numpy().nonzero()[0][0])
            raise AnalysisError(
                f"column {c!r} has {n_missing} missing value(s) (first in row {first + 1})"
            )
    return mediators


def _check_every_site_has_every_arm(site_code, arm_code, site_labels, arm_labels) -> None:
    K, A = len(site_labels), len(arm_labels)
    counts = np.zeros((K, A), np.int64)
    np.add.at(counts, (site_code, arm_code), 1)
    for s in range(K):
        present = counts[s] > 0
        if present.sum() == 1:
            raise AnalysisError(
                f"site {_label(site_labels[s])} has a single treatment arm "
                f"({_label(arm_labels[present.argmax()])}); every site needs every arm"
            )
        if not present.all():
            absent = ", ".join(_label(a) for a in arm_labels[~present])
            raise AnalysisError(f"site {_label(site_labels[s])} has no persons in arm(s) {absent}")


def analyze(
    frame: pd.DataFrame,
    site: str,
    treatment: str,
    mediators: Sequence[str] | str,
    outcome: str,
    *,
    level: float = 0.95,
    fuller_alpha: float = 1.0,
    estimators: Sequence[str] = ESTIMATORS,
) -> pd.DataFrame:
    """Every estimator and diagnostic on a real multisite dataset.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per person.
    site : str
        Column of site labels (any hashable, sortable labels).
    treatment : str
        Column of treatment labels; sorted, the smallest is arm 0 (control) and the
        rest are ordered arms 1..L.
    mediators : str or sequence of str
        Numeric mediator columns.
    outcome : str
        Numeric outcome column.
    level, fuller_alpha, estimators
        As in :func:`simulate.estimators.estimate`.

    Returns
    -------
    pandas.DataFrame
        The tidy frame of :func:`simulate.estimators.estimate`; ``frame.attrs`` holds
        ``sites`` and ``arms`` (the labels in code order), ``level`` and ``jackknife_ar`` (the dict of
        :func:`simulate.estimators.inference.jackknife_ar` at beta = 0) and, for one mediator,
        ``jackknife_ar_set`` (:func:`simulate.estimators.inference.jackknife_ar_set`).

    Raises
    ------
    AnalysisError
        Missing columns, non-numeric or missing values, fewer than two arms, or a
        site that lacks one of the arms.
    """
    refused = unknown_estimator_message(estimators)
    if refused:
        raise AnalysisError(refused)
    mediators = _check_columns(frame, site, treatment, mediators, outcome)
    y = _numeric(frame, outcome)
    M = np.column_stack([_numeric(frame, c) for c in mediators])
    site_code, site_labels = _ordered_codes(frame[site], "site")
    arm_code, arm_labels = _ordered_codes(frame[treatment], "treatment")
    if len(arm_labels) < 2:
        raise AnalysisError(f"treatment column {treatment!r} has a single value {_label(arm_labels[0])}")
    _check_every_site_has_every_arm(site_code, arm_code, site_labels, arm_labels)
    K, A = len(site_labels), len(arm_labels)
    result = estimate(
        site_code,
        arm_code,
        M,
        y,
        estimators=estimators,
        mediator_names=mediators,
        level=level,
        fuller_alpha=fuller_alpha,
        n_sites=K,
        n_arms=A,
    )
    result.attrs["level"] = float(level)
    result.attrs["jackknife_ar"] = {k: v for k, v in jackknife_ar(site_code, arm_code, M, y,
                                                                  np.zeros(M.shape[1])).items() if k[0] != "_"}
    if M.shape[1] == 1:
        result.attrs["jackknife_ar_set"] = jackknife_ar_set(site_code, arm_code, M[:, 0], y, level=level)
    result.attrs["sites"] = [str(s) for s in site_labels]
    result.attrs["arms"] = [str(a) for a in arm_labels]
    return result


def _fmt(x: float, width: int = 10, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return f"{'.':>{width}}"
    ax = abs(x)
    if ax != 0 and (ax < 10 ** -(digits - 1) or ax >= 10**6):
        return f"{x:>{width}.{digits - 1}e}"
    return f"{x:>{width}.{digits}f}"


def weak_instrument_warning(result: pd.DataFrame) -> str | None:
    """One line warning of weak instruments, or None.

    The rule: some mediator's conditional first-stage F (Sanderson-Windmeijer; the first-stage
    F when P = 1) is below :data:`WEAK_F`.  The Wald intervals of every estimator are then
    unreliable; the line names the intervals to read instead: the Anderson-Rubin set
    (conventional, and site-clustered when effects may vary between sites) for one mediator,
    the joint AR test for several.

    Parameters
    ----------
    result : pandas.DataFrame
        The frame of :func:`analyze`.

    Returns
    -------
    str or None
    """
    meds = result[result["mediator"] != "direct_effect"].drop_duplicates("mediator")
    weak = [(str(r["mediator"]), float(r["conditional_f"])) for _, r in meds.iterrows()
            if np.isfinite(r["conditional_f"]) and r["conditional_f"] < WEAK_F]
    if not weak:
        return None
    which = ", ".join(f"{m} {f:.1f}" for m, f in weak)
    what = "conditional F" if len(meds) > 1 else "first-stage F"
    read = ("the Anderson-Rubin confidence set (ar_low/ar_high; site-clustered ar_cluster_low/ar_cluster_high)"
            if len(meds) == 1 else "the joint Anderson-Rubin test (ar_p, ar_cluster_p)")
    read += " or, with many instruments, the jackknife AR test"
    return (f"warning: weak instruments ({what} {which} < {WEAK_F:g}): the Wald intervals of every estimator "
            f"are unreliable; read {read} instead")


def _ar_lines(first: pd.Series, level) -> list[str]:
    """The Anderson-Rubin lines of :func:`format_table`."""
    lines = [f"  Anderson-Rubin test of no effect (weak-instrument robust): F = {_fmt(first['ar_stat'], 0)},"
             f" p = {_fmt(first['ar_p'], 0)}; site-clustered (pooled instrument):"
             f" {_fmt(first['ar_cluster_stat'], 0)}, p = {_fmt(first['ar_cluster_p'], 0)}"]
    pct = f"{100 * level:g}% " if level is not None else ""
    for name, prefix in (("conventional", "ar"), ("site-clustered", "ar_cluster")):
        kind = first[f"{prefix}_set_kind"]
        if kind == "not_computed":
            continue
        lo, hi = first[f"{prefix}_low"], first[f"{prefix}_high"]
        text = {"interval": f"[{_fmt(lo, 0)}, {_fmt(hi, 0)}]",
                "two_rays": f"(-inf, {_fmt(lo, 0)}] U [{_fmt(hi, 0)}, inf)",
                "whole_line": "the whole line", "empty": "empty"}.get(kind, kind)
        lines.append(f"  {pct}Anderson-Rubin confidence set, {name}: {text} ({kind})")
    return lines


def format_table(result: pd.DataFrame) -> str:
    """A readable text table of every estimator and the diagnostics.

    One line per estimator x mediator: estimate, conventional and robust (HC0)
    standard errors, the standard error behind the interval (``se_ci``, of the kind
    named in ``ci_se``), the confidence interval and p-value, and the status; then the
    diagnostics, the Anderson-Rubin tests and sets, the balanced-design note; a weak-instrument
    warning (:func:`weak_instrument_warning`) as the first line when the rule fires.
    """
    lines = []
    first = result.iloc[0]
    head = (
        f"{'estimator':<21}{'mediator':<16}{'estimate':>10}{'se_conv':>10}{'se_robust':>10}"
        f"{'se_ci':>10}{'conf_low':>10}{'conf_high':>10}{'p_value':>10}  {'ci_se':<17}status"
    )
    lines.append(
        f"n = {int(first['n'])}, sites = {int(first['n_sites'])}, arms = {int(first['n_arms'])}"
        + (f" ({', '.join(result.attrs['arms'])})" if "arms" in result.attrs else "")
    )
    lines.append("")
    lines.append(head)
    lines.append("-" * len(head))
    for _, r in result.iterrows():
        lines.append(
            f"{r['estimator']:<21}{str(r['mediator'])[:15]:<16}{_fmt(r['estimate'])}"
            f"{_fmt(r['se_conventional'])}{_fmt(r['se_robust'])}{_fmt(r['std_error'])}{_fmt(r['conf_low'])}"
            f"{_fmt(r['conf_high'])}{_fmt(r['p_value'])}  {r['se_type']:<17}{r['status']}"
        )
    lines.append("")
    lines.append("Diagnostics")
    meds = result.drop_duplicates("mediator")
    for _, r in meds.iterrows():
        if r["mediator"] == "direct_effect":
            continue
        lines.append(
            f"  first-stage F ({r['mediator']}): {_fmt(r['first_stage_f'], 0)}"
            f"   Sanderson-Windmeijer conditional F: {_fmt(r['conditional_f'], 0)}"
        )
    lines.append(
        f"  compliance matrix: smallest singular value {_fmt(first['sigma_min'], 0)},"
        f" ratio to largest {_fmt(first['sigma_ratio'], 0)}"
    )
    lines.append(
        f"  overidentification (Sargan, 2SLS): {_fmt(first['overid_stat'], 0)}"
        f" on {int(first['overid_df']) if np.isfinite(first['overid_df']) else '.'} df,"
        f" p = {_fmt(first['overid_p'], 0)};"
        f" many-instrument (Cragg-Donald, Kolesar 2018) p = {_fmt(first['overid_p_many_instrument'], 0)}"
    )
    lines.append(
        f"  nonlinearity of the between-site relation (squared compliances): "
        f"{_fmt(first['nonlinearity_stat'], 0)} on "
        f"{int(first['nonlinearity_df']) if np.isfinite(first['nonlinearity_df']) else '.'} df,"
        f" p = {_fmt(first['nonlinearity_p'], 0)}"
    )
    lines.append(f"  LIML kappa: {_fmt(first['liml_kappa'], 0, 6)}")
    lines += _ar_lines(first, result.attrs.get("level"))
    jar = result.attrs.get("jackknife_ar")
    if jar is not None:
        lines.append(f"  jackknife AR test of no effect (Mikusheva & Sun 2022, many weak instruments):"
                     f" {_fmt(jar['stat'], 0)}, one-sided p = {_fmt(jar['p_value'], 0)}")
    pieces = result.attrs.get("jackknife_ar_set")
    if pieces is not None:
        level = result.attrs.get("level")
        pct = f"{100 * level:g}% " if level is not None else ""
        text = " U ".join(f"[{_fmt(lo, 0)}, {_fmt(hi, 0)}]".replace("[-inf", "(-inf").replace("inf]", "inf)")
                          for lo, hi in pieces) or "empty"
        lines.append(f"  {pct}jackknife AR confidence set: {text}")
    if first["balanced_design"] == 1.0:
        lines.append("  balanced design (every site x arm cell the same size): UJIVE and MBTSLS are the same k-class "
                     "estimator here, kappa = 1 + (A - 1)/(n_s - A), so their rows are equal by construction")
    warn = weak_instrument_warning(result)
    if warn:
        lines.insert(0, warn)
    return "\n".join(lines)


def to_records(result: pd.DataFrame) -> list[dict]:
    """JSON-ready records (NaN -> None) with the fields of :data:`JSON_FIELDS`."""
    out = []
    for _, r in result.iterrows():
        rec = {}
        for f in JSON_FIELDS:
            v = r[f]
            if isinstance(v, (float, np.floating)):
                v = None if not np.isfinite(v) else float(v)
            rec[f] = v
        out.append(rec)
    return out


def read_csv(path) -> pd.DataFrame:
    """Read a data file (CSV, optionally compressed) whose column names are distinct.

    pandas renames a repeated column silently (``x``, ``x.1``), which would let an analysis
    use the wrong one; the header is read first, as text, and a repeat is an error.

    Raises
    ------
    AnalysisError
        One line: a file that cannot be read, or the repeated column names.
    """
    try:
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
        names = [str(x) for x in header.iloc[0]] if len(header) else []
        counts: dict[str, int] = {}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        repeated = [f"{n!r} ({c} times)" for n, c in counts.items() if c > 1]
        if repeated:
            raise AnalysisError(f"{path}: duplicate column names: {', '.join(repeated)}; every column needs its own "
                                "name")
        return pd.read_csv(path)
    except FileNotFoundError:
        raise AnalysisError(f"file not found: {path}") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, AnalysisError):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AnalysisError(f"cannot read {path}: {msg}") from None
