"""Fuzz: every scenario that validates has a truth and runs (issue 12).

Hypothesis draws scenario tables over every dial (sites, persons, 1-3 mediators of either
kind, 2-4 arms, SDs including 0, correlations, curvature, paths, selection, spillover,
defiers, direct effects, baselines), keeps those that :func:`from_dict` accepts, and checks
that the truth returns (each value finite, or NaN with a reason in ``notes``) and that a
short run ends with a summary.  A limit that does not exist is NaN with a note, never an
exception.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simulate.runner import RunConfig, run
from simulate.scenario import ScenarioError, from_dict
from simulate.truth import truth

SDS = st.sampled_from([0.0, 0.0, 0.1, 0.3, 0.8, 1e-9, 50.0])
SMALL = st.sampled_from([0.0, 0.0, 0.0, -0.4, 0.2, 0.5, 3.0])
CORR = st.sampled_from([0.0, 0.0, 0.0, -0.5, 0.3, 0.7, 0.95, 1.0, -1.0])
MEANS = st.sampled_from([0.0, 0.5, 1.0, -0.3, 2.0, 1e-8, -1e4])


@st.composite
def scenarios(draw) -> dict:
    P = draw(st.integers(1, 3))
    arms = draw(st.integers(2, 4))
    K = draw(st.integers(1, 25))
    kinds = [draw(st.sampled_from(["continuous", "continuous", "binary"])) for _ in range(P)]
    binary = [k == "binary" for k in kinds]
    raw: dict = {"name": "fuzz", "n_sites": K}
    size = draw(st.sampled_from(["fixed", "range", "list"]))
    if size == "fixed":
        raw["n_per_site"] = draw(st.integers(6, 60))
    elif size == "range":
        lo = draw(st.integers(6, 40))
        raw["n_per_site"] = {"min": lo, "max": lo + draw(st.integers(0, 30))}
    else:
        raw["n_per_site"] = [draw(st.integers(8, 50)) for _ in range(K)]

    treatment: dict = {"arms": arms, "assignment": draw(st.sampled_from(["complete", "complete", "bernoulli"]))}
    if arms == 2:
        treatment["share"] = draw(st.sampled_from([0.5, 0.3, 0.7, 0.02]))
    elif draw(st.booleans()):
        w = [draw(st.integers(1, 4)) for _ in range(arms)]
        treatment["arm_shares"] = [x / sum(w) for x in w]
        treatment["arm_shares"][-1] = 1.0 - sum(treatment["arm_shares"][:-1])
    raw["treatment"] = treatment

    med: dict = {"count": P, "kind": kinds,
                 "outcome_curvature": [0.0 if binary[p] else draw(SMALL) for p in range(P)]}
    if arms > 2:
        med["curvature"] = [draw(st.sampled_from([0.0, 0.0, 0.3, -0.2])) for _ in range(P)]
    raw["mediators"] = med

    site = {"compliance_mean": [draw(MEANS) for _ in range(P)], "compliance_sd": [draw(SDS) for _ in range(P)],
            "effect_mean": [draw(MEANS) for _ in range(P)], "effect_sd": [draw(SDS) for _ in range(P)],
            "direct_effect_mean": draw(SMALL), "direct_effect_sd": draw(SDS),
            "compliance_effect_correlation": [draw(CORR) for _ in range(P)],
            "compliance_correlation": draw(st.sampled_from([0.0, 0.0, 0.3, 0.9])),
            "nonlinear_dependence": [draw(SMALL) for _ in range(P)],
            "mediator_baseline_sd": [0.0 if binary[p] else draw(SDS) for p in range(P)],
            "outcome_baseline_sd": draw(SDS)}
    if all(binary):
        del site["compliance_mean"], site["compliance_sd"]
    raw["site"] = site

    person = {"outcome_mean": draw(MEANS), "outcome_sd": draw(st.sampled_from([0.0, 1.0, 2.0])),
              "effect_sd": [draw(SDS) for _ in range(P)],
              "within_site_correlation": [draw(CORR) for _ in range(P)],
              "confounding": [draw(CORR) for _ in range(P)]}
    if not all(binary):
        person.update(mediator_mean=[draw(MEANS) for _ in range(P)],
                      mediator_sd=[draw(st.sampled_from([0.0, 1.0, 0.5])) for _ in range(P)],
                      compliance_sd=[0.0 if binary[p] else draw(SDS) for p in range(P)])
    if P >= 2 and draw(st.booleans()):
        person["correlations"] = {"effect_1:effect_2": draw(CORR)}
    raw["person"] = person

    if any(binary):
        b: dict = {k: [] for k in ("complier_share", "always_share", "never_share", "defier_share")}
        for _ in range(P):
            c = draw(st.sampled_from([0.3, 0.5, 0.8, 1.0, 0.01]))
            d = draw(st.sampled_from([0.0, 0.0, 0.05]))
            a = draw(st.sampled_from([0.0, 0.1, 0.2]))
            b["complier_share"].append(c)
            b["defier_share"].append(d)
            b["always_share"].append(a)
            b["never_share"].append(round(1.0 - c - d - a, 12))
        b["complier_share_site_sd"] = [draw(SDS) for _ in range(P)]
        b["always_effect_shift"] = draw(SMALL)
        b["defier_effect_shift"] = draw(SMALL)
        raw["binary"] = b

    if P >= 2 and draw(st.booleans()):
        targets = [q for q in range(2, P + 1) if not binary[q - 1]]
        if targets:
            to = draw(st.sampled_from(targets))
            raw["paths"] = [{"from": 1, "to": to, "mean": draw(MEANS), "site_sd": draw(SDS),
                             "person_sd": draw(SDS), "effect_correlation": draw(CORR)}]
    if draw(st.booleans()):
        raw["selection"] = {"strength": draw(st.sampled_from([0.5, -1.0, 2.0, 10.0])),
                            "on": draw(st.sampled_from(["outcome", "compliance"])),
                            "mediator": draw(st.integers(1, P))}
    if draw(st.booleans()):
        raw["spillover"] = {"outcome": draw(SMALL), "mediator": [draw(SMALL) for _ in range(P)]}
    return raw


def _valid(raw: dict):
    try:
        return from_dict(raw, "fuzz")
    except ScenarioError:
        return None


def _check_truth(sc, tr):
    values = {"ate": tr.ate, "late": tr.late, "compliance_weighted": tr.compliance_weighted,
              "limit_2sls": tr.limit_2sls, "limit_between_ols": tr.limit_between_ols,
              "limit_between_intercept": tr.limit_between_intercept, "limit_wald": tr.limit_wald,
              "limit_liml": tr.limit_liml}
    for name, vals in values.items():
        assert len(vals) == sc.n_mediators, name
        for v in vals:
            assert isinstance(v, float) and not math.isinf(v), (name, v)
    # the targets are closed forms: finite wherever they are defined
    assert all(math.isfinite(x) for x in tr.ate)
    for p, kind in enumerate(sc.mediator_kind):
        assert math.isfinite(tr.late[p]) == (kind == "binary")
    # a NaN limit carries a reason (a mediator's LATE and the P > 1 Wald are NaN by definition)
    limits = (tr.compliance_weighted + tr.limit_2sls + tr.limit_between_ols + tr.limit_between_intercept
              + tr.limit_liml)
    if any(math.isnan(x) for x in limits):
        assert tr.notes, f"NaN limit without a note: {tr}"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=scenarios())
def test_truth_of_every_valid_scenario_returns(raw):
    sc = _valid(raw)
    assume(sc is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no numpy warnings either
        tr = truth(sc, n_sites=20_000)
    _check_truth(sc, tr)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(raw=scenarios())
def test_short_run_of_every_valid_scenario_ends_with_a_summary(raw, tmp_path_factory):
    sc = _valid(raw)
    assume(sc is not None)
    out = tmp_path_factory.mktemp("fuzz_run")
    run(sc, out, RunConfig(reps=3, seed=5, jobs=1, quiet=True), truth_sites=20_000)
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) > 0
    assert set(summary["mediator"]) >= set(sc.mediator_names)


@pytest.mark.parametrize("sd", [0.3, 0.35])
def test_issue_12_reproduction_runs(sd, tmp_path):
    raw = {"n_sites": 12, "n_per_site": 40, "mediators": {"names": ["income", "hours"]},
           "site": {"compliance_mean": [1.0, 0.6], "compliance_sd": [0.4, 0.3], "effect_mean": [0.5, 0.25],
                    "effect_sd": [sd, sd]}}
    sc = from_dict(raw)
    tr = truth(sc, n_sites=20_000)
    assert np.isnan(tr.limit_liml).all() and tr.notes
    run(sc, tmp_path / "r", RunConfig(reps=3, seed=1, jobs=1, quiet=True), truth_sites=20_000)
    assert (tmp_path / "r" / "summary.csv").exists()
