"""Axis labels read from the assumption catalogue (issue 13): every swept path of every dial is labelled
by its assumption, the labels of session 5 are unchanged, and the README's dial table names every path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulate.assumptions import ASSUMPTIONS, DESIGN_LABELS, axis_labels
from simulate.plots.labels import DIAL_LABELS, dial_label
from simulate.stress import plan_sweeps, read_design

ROOT = Path(__file__).parent.parent

# the hand-written table this replaces (session 5), every entry of which must read the same
OLD = {
    "n_sites": "number of sites K [finite sample; assumption viii when K < P]",
    "spillover.outcome": "outcome spillover on controls [assumption i, SUTVA]",
    "site.direct_effect_compliance_correlation": "corr(κ, γ) between sites [assumption ii, exclusion]",
    "mediators.curvature": "mediator curvature c in g(t) = t + c t(t−1) [assumption iii]",
    "paths.site_sd": "between-site SD of the mediator path [assumption v, parallel mediators]",
    "person.within_site_correlation": "within-site correlation corr(Γ, Δ) [assumption vii.a]",
    "binary.defier_share": "share of defiers [assumption vii.b]",
    "site.compliance_sd": "between-site SD of compliance sd(γ) [assumption viii, rank]",
    "site.nonlinear_dependence": "nonlinear dependence λ of δ on γ [assumption ix]",
    "binary.complier_share_site_sd": "between-site SD of the complier share",
    "binary.never_effect_shift": "effect shift of never-takers",
}


def _designs():
    root = ROOT / "simulate" / "scenarios"
    return [p for p in sorted(root.rglob("*.toml")) if "[grid]" not in p.read_text(encoding="utf-8")]


def test_old_labels_are_unchanged_and_derived_from_the_catalogue():
    assert DIAL_LABELS == axis_labels()
    for path, label in OLD.items():
        assert DIAL_LABELS[path] == label, path
    owned = [p for a in ASSUMPTIONS for p, _ in a.axes]
    assert not set(owned) & set(DESIGN_LABELS)  # a path is a dial's or a design parameter, not both


@pytest.mark.parametrize("a", ASSUMPTIONS, ids=lambda a: a.key)
def test_every_assumption_labels_its_paths_with_its_numeral(a):
    assert a.axes, a.key
    for path, label in a.axes:
        assert isinstance(path, str) and isinstance(label, str)
        assert f"[assumption {a.numeral}" in label and label.endswith("]"), (a.key, label)


def test_every_swept_path_of_every_design_has_a_label_naming_its_assumption():
    planned = set()
    for path in _designs():
        raw, settings = read_design(path)
        for sw in plan_sweeps(raw, settings, str(path)):
            if sw.skipped is not None:
                continue
            planned.add(sw.dial.key)
            labels = [dial_label(p) for p in sw.paths]
            assert all(lab != p for lab, p in zip(labels, sw.paths)), (path.name, sw.dial.key, sw.paths)
            assert f"[assumption {sw.dial.numeral}" in labels[0], (path.name, sw.dial.key, labels[0])
    assert planned == {a.key for a in ASSUMPTIONS}  # the library's designs exercise every recipe


def test_indices_and_patterns():
    assert dial_label("paths[2].mean").endswith(", path 2 [assumption v, parallel mediators]")
    assert ", interaction 1 [assumption iv]" in dial_label("interactions[1].coefficient")
    assert "corr(path_1_2, effect_2)" in dial_label("site.correlations.path_1_2:effect_2")
    assert dial_label("site.correlations.compliance_1:effect_2") == "corr(compliance_1, effect_2) between sites"
    assert dial_label("no.such.path") == "no.such.path"


def _readme_form(path: str) -> str:
    table, _, field = path.partition(".")
    if table in ("paths", "interactions"):
        return f"`{field}`"
    if path.startswith("site.correlations.path_"):
        return "path_<from>_<to>"
    if path.startswith("site.cross_dependence."):
        return "[site.cross_dependence]"
    return f"`{path}`"


def test_the_readme_dial_table_names_every_path_of_every_assumption():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| ([ivx]+(?:\.[ab])?) .*$", readme, re.M)}
    for a in ASSUMPTIONS:
        assert a.numeral in rows, a.numeral
        for path, _ in a.axes:
            assert _readme_form(path) in rows[a.numeral], (a.key, path)
