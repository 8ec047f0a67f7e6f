"""One registry of estimators, one inference module, one row schema (issue 13)."""

import numpy as np
import pandas as pd
import pytest
from _data import make_data
from scipy import stats

import simulate as sm
from simulate import estimators as est
from simulate.estimators import registry as reg
from simulate.estimators import rows
from simulate.kernels import codes_nb as nb
from simulate.replicate import ROW_COLUMNS, replication_seed, run_replications

SMALL = """
n_sites = 9
n_per_site = 40
[treatment]
arms = 3
[mediators]
count = 2
[site]
compliance_sd = 0.3
effect_sd = 0.2
direct_effect_sd = 0.1
[person]
compliance_sd = 0.4
effect_sd = 0.3
confounding = 0.3
"""


# --------------------------------------------------------------- the registry
def test_plots_and_truth_read_the_registry():
    # one place per fact: the figures' labels and styles and truth's limits are the registry's objects
    from simulate import plots
    from simulate.truth import LIMIT_OF

    assert plots.ESTIMATOR_LABELS is est.ESTIMATOR_LABELS
    assert plots.ESTIMATOR_STYLES is est.ESTIMATOR_STYLES
    assert LIMIT_OF is est.LIMIT_OF


def test_registry_labels_and_styles_are_the_ones_drawn_before_the_registry():
    # the values plots.py held before the switch (issue 13): the figures did not change
    assert est.ESTIMATOR_LABELS["ols"] == "OLS (site FE, confounded)"
    assert est.ESTIMATOR_STYLES["2sls"] == ("#0072B2", "s", "-")
    assert est.ESTIMATOR_STYLES["between_intercept"] == ("#F0E442", "*", "-.")
    assert len(set(est.ESTIMATOR_STYLES.values())) == len(est.ESTIMATOR_STYLES)


def test_registry_rows_are_the_kernel_rows():
    names = {"ols": nb.E_OLS, "2sls": nb.E_TSLS, "liml": nb.E_LIML, "fuller": nb.E_FULLER, "ujive": nb.E_UJIVE,
             "mbtsls": nb.E_MBTSLS, "between_ols": nb.E_BETWEEN_OLS,
             "between_precision": nb.E_BETWEEN_PRECISION, "between_intercept": nb.E_BETWEEN_INTERCEPT,
             "wald": nb.E_WALD, "rciv_meta": nb.E_RCIV_META, "rciv_bivariate": nb.E_RCIV_BIVARIATE}
    assert [s.kernel_row for s in est.REGISTRY] == list(range(nb.N_ESTIMATORS))
    assert {s.name: s.kernel_row for s in est.REGISTRY} == names
    assert est.ESTIMATORS == tuple(names)
    assert sm.ESTIMATORS == est.ESTIMATORS
    assert est.SE_TYPES.index("cluster") == nb.SE_CLUSTER and est.SE_TYPES.index("hc0") == nb.SE_HC0
    assert len(est.SE_TYPES) == nb.N_SE
    assert sum(s.direct_effect_row for s in est.REGISTRY) == 1


def _old_primary_df(K, P):
    """The rule before the registry: clustered K - 1, between K - P, with intercept K - P - 1."""
    out = np.empty(len(est.ESTIMATORS))
    for e, name in enumerate(est.ESTIMATORS):
        if est.PRIMARY_SE[name] == "cluster":
            out[e] = K - 1
        elif name == "between_intercept":
            out[e] = K - P - 1
        elif name.startswith("between"):
            out[e] = K - P
        else:
            out[e] = np.inf
    return np.where(out > 0, out, np.nan)


@pytest.mark.parametrize(("K", "P"), [(2, 1), (3, 2), (4, 3), (10, 1), (50, 4), (1, 1)])
def test_primary_se_and_degrees_of_freedom_as_before(K, P):
    assert est.PRIMARY_SE == {e: ("hc0" if e.startswith("between") else "cluster") for e in est.ESTIMATORS}
    np.testing.assert_array_equal(est.primary_df(K, P), _old_primary_df(K, P))
    for e, s in enumerate(est.REGISTRY):
        np.testing.assert_array_equal(s.df(K, P), _old_primary_df(K, P)[e])


def test_estimators_for_and_spec():
    assert est.estimators_for(1) == est.ESTIMATORS
    assert est.estimators_for(2) == tuple(e for e in est.ESTIMATORS if e not in ("wald", "rciv_bivariate"))
    assert est.spec("liml").limit == "limit_liml"
    with pytest.raises(KeyError, match="unknown estimator 'jive9'"):
        est.spec("jive9")
    with pytest.raises(ValueError, match="df_rule"):
        reg.EstimatorSpec(name="x", label="x", kernel_row=0, primary_se="hc0", primary_se_reason="", df_rule="?",
                          limit=None, style=("#000000", "o", "-"), description="")
    with pytest.raises(ValueError, match="primary_se"):
        reg.EstimatorSpec(name="x", label="x", kernel_row=0, primary_se="hc9", primary_se_reason="",
                          df_rule="sites", limit=None, style=("#000000", "o", "-"), description="")
    for s in est.REGISTRY:
        assert s.label and s.description and s.primary_se_reason
        assert s.style[0].startswith("#") and len(s.style) == 3


def test_the_docstring_says_how_to_add_an_estimator():
    doc = reg.__doc__
    assert "Adding an estimator" in doc and "E_NEW" in doc and "EstimatorSpec" in doc


# --------------------------------------------------------------- inference
def test_t_inference_matches_scipy_stats_and_broadcasts():
    rng = np.random.default_rng(3)
    b, s = rng.normal(size=(4, 3)), rng.uniform(0.1, 2, size=(4, 3))
    df = np.array([1.0, 7.0, np.inf])
    lo, hi, p = est.t_inference(b, s, df, 0.9)
    q = stats.t.ppf(0.95, df)
    np.testing.assert_allclose(lo, b - q * s, rtol=1e-12)
    np.testing.assert_allclose(hi, b + q * s, rtol=1e-12)
    np.testing.assert_allclose(p, 2 * stats.t.sf(np.abs(b / s), df), rtol=1e-10)
    lo, hi, p = est.t_inference(1.0, 0.5, np.nan)
    assert np.isnan(lo) and np.isnan(hi) and np.isnan(p)
    lo, hi, p = est.direct_effect_inference_arrays(np.array([1.0, 1.0, 1.0]), np.array([0.5, 0.0, np.inf]), 5, 1)
    assert np.isfinite(lo[0]) and np.isnan(lo[1:]).all() and np.isnan(p[1:]).all()
    np.testing.assert_allclose(hi[0], 1.0 + stats.t.ppf(0.975, 5 - 1 - 1) * 0.5, rtol=1e-12)
    assert np.isnan(est.direct_effect_inference_arrays(np.array([1.0]), np.array([0.5]), 3, 2)[0]).all()


def test_vectorised_diagnostics_equal_one_dataset_at_a_time():
    arrays = [est.estimate_arrays(*make_data(seed, 7, 3, 2), 7, 3) for seed in range(4)]
    batch = est.diagnostic_columns(np.stack([a.diagnostics for a in arrays]), 7, 2)
    for r, a in enumerate(arrays):
        one = est.diagnostic_values(a)
        assert list(one) == list(batch)
        for k, v in one.items():
            np.testing.assert_array_equal(v, batch[k][r], err_msg=k)


# --------------------------------------------------------------- the row schema
def test_one_schema_for_both_paths():
    assert ROW_COLUMNS == est.SIMULATION_COLUMNS
    for name, c in est.COLUMNS.items():
        assert c.paths in ("both", "analysis", "simulation"), name
        assert c.meaning and "\n" not in c.meaning, name
        assert c.dtype in ("str", "int32", "int64", "float64"), name
    both = [k for k, c in est.COLUMNS.items() if c.paths == "both"]
    assert [k for k in est.ANALYSIS_COLUMNS if k in both] == [k for k in ROW_COLUMNS if k in both] == both
    assert "se_heterogeneity" in ROW_COLUMNS and "se_type" in ROW_COLUMNS
    assert {"cell", "rep", "seed", "cell_key", "sample_ate"} <= set(ROW_COLUMNS) - set(est.ANALYSIS_COLUMNS)


def _dtype_ok(series: pd.Series, dtype: str) -> bool:
    if dtype == "str":
        return pd.api.types.is_string_dtype(series) and all(isinstance(x, str) for x in series)
    return series.dtype == np.dtype(dtype)


def test_frames_have_the_schemas_columns_and_dtypes():
    site, arm, M, Y = make_data(5, 8, 3, 2)
    frame = est.estimate(site, arm, M, Y)
    assert list(frame.columns) == list(est.ANALYSIS_COLUMNS)
    for k, dtype in est.ANALYSIS_COLUMNS.items():
        assert _dtype_ok(frame[k], dtype), k
    simulated = pd.DataFrame(run_replications(sm.loads(SMALL), 0, 0, 4, range(3)))
    assert list(simulated.columns) == list(ROW_COLUMNS)
    for k, dtype in ROW_COLUMNS.items():
        assert _dtype_ok(simulated[k], dtype), k


def test_a_simulated_replication_has_the_rows_of_its_analysis():
    sc = sm.loads(SMALL)
    sim = pd.DataFrame(run_replications(sc, 0, 0, 11, range(2)))
    sim = sim[sim.rep == 1].reset_index(drop=True)
    trial = sm.draw(sc, replication_seed(11, 0, 1))
    ref = sm.estimate(trial.site, trial.treatment, trial.mediators, trial.outcome, mediator_names=sc.mediator_names,
                      estimators=est.estimators_for(sc.n_mediators))
    # the simulation puts the direct-effect row last; the analysis right after between_intercept
    ref = pd.concat([ref[ref.mediator != "direct_effect"], ref[ref.mediator == "direct_effect"]],
                    ignore_index=True)
    assert len(sim) == len(ref) and (sim.estimator == ref.estimator).all() and (sim.mediator == ref.mediator).all()
    assert np.isfinite(sim.se_heterogeneity).any()
    for k, c in est.COLUMNS.items():
        if c.paths != "both":
            continue
        a, b = sim[k].to_numpy(), ref[k].to_numpy()
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=k)
        else:
            assert (a == b).all(), k


def test_failed_replications_have_every_column():
    from simulate import replicate as rp

    out = rp._failed_rows(2, "boom")
    assert set(out) | {"cell", "rep", "estimator", "mediator", "se_type", "seed", "cell_key"} == set(ROW_COLUMNS)
    assert (out["status_code"] == rows.ERROR_STATUS_CODE).all()


def test_row_plan_orders():
    plan = est.row_plan(["a", "b"], ["2sls", "between_intercept", "wald"])
    assert list(plan.mediator) == ["a", "b", "a", "b", "direct_effect", "a", "b"]
    assert list(plan.se_type) == ["cluster", "cluster", "hc0", "hc0", "hc0", "cluster", "cluster"]
    last = est.row_plan(["a"], ["between_intercept", "wald"], direct_effect="last")
    assert list(last.estimator) == ["between_intercept", "wald", "between_intercept"]
    assert list(last.column) == [0, 0, -1]
    assert len(est.row_plan(["a"], ["between_intercept"], direct_effect=None).row) == 1
