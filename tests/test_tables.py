"""Rendering of a summary (simulate.tables): pandas' Markdown and LaTeX writers, CSV and JSON."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from simulate import tables as T
from simulate.measures import LONG_COLUMNS, Summary, SummaryError


def _frame() -> pd.DataFrame:
    recs = []
    for cell in (0, 1):
        for est in ("2sls", "between_ols"):
            recs += [(cell, est, "m_1", "none", "n_reps", 40.0, math.nan, 40),
                     (cell, est, "m_1", "none", "empirical_se", 0.123456, 0.0123, 40),
                     (cell, est, "m_1", "ate", "bias", -0.0004567 * (cell + 1), 0.0011, 40),
                     (cell, est, "m_1", "ate", "coverage", 0.95, 0.0345, 40)]
    frame = pd.DataFrame.from_records(recs, columns=list(LONG_COLUMNS))
    frame.attrs["cells"] = {0: [("site.effect_sd", 0.1)], 1: [("site.effect_sd", 0.2)]}
    return frame


@pytest.fixture()
def summary() -> Summary:
    return Summary.from_frame(_frame())


def test_markdown_is_pandas_to_markdown_of_the_printed_table(summary):
    md = T.to_markdown(summary)
    assert "- cell 1: site.effect_sd = 0.2" in md
    assert "### target: population ATE" in md and "### measures without a target" in md
    _, table = next((t, tab) for t, tab in T._sections(summary.table) if t == "ate")
    want = table.to_markdown(index=False, tablefmt="pipe", colalign=["left"] * 3 + ["right"] * 2,
                             disable_numparse=True)
    assert want in md
    assert "| -4.567e-04 (0.0011) |" in md  # strings are kept as written, not parsed into numbers


def test_latex_is_a_styler_table_with_booktabs_caption_and_label(summary):
    tex = T.to_latex(summary)
    assert tex.startswith("% Performance measures")
    for t in ("none", "ate"):
        assert rf"\label{{tab:summary-{t}}}" in tex
    assert tex.count(r"\begin{table}") == 2 and tex.count(r"\centering") == 2
    assert tex.count(r"\caption{Performance measures, ") == 2
    assert r"\begin{tabular}{lllrr}" in tex
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"between\_ols" in tex and r"m\_1" in tex and "between_ols" not in tex
    assert r"power rejects zero at alpha = 0.05." in tex


def test_csv_and_json_of_a_summary_equal_those_of_its_frame(summary):
    frame = _frame()
    assert T.to_csv(summary) == T.to_csv(frame)
    back = pd.read_csv(io.StringIO(T.to_csv(summary)))
    np.testing.assert_array_equal(back["value"].to_numpy(), frame["value"].to_numpy())
    recs = json.loads(T.to_json(summary))
    assert recs[0]["mcse"] is None and len(recs) == len(frame)


def test_render_of_a_summary_equals_that_of_its_frame(summary):
    for fmt in T.FORMATS:
        assert T.render(summary, fmt) == T.render(_frame(), fmt)
    with pytest.raises(SummaryError, match="unknown format"):
        T.render(summary, "html")


def test_wide_of_a_summary(summary):
    w = T.wide(summary)
    assert len(w) == 8 and list(w.columns[:4]) == ["cell", "estimator", "mediator", "target"]
    assert w["n_reps"].dtype == "Int64"
