# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # (e) A real study, analysed and calibrated: Angrist & Krueger (1991)
#
# The 1980 Census extract of men born 1930-39 (329,509 persons): **year of birth** is the
# site, **quarter of birth** a four-arm treatment (Q1 is the control arm; later quarters
# mean more compulsory schooling), **years of education** the mediator, **log weekly wage**
# the outcome.  Ten sites, three site-by-treatment instruments each.
#
# Three steps:
#
# 1. analyse the data with every estimator and diagnostic (`simulate.analyze`);
# 2. calibrate a scenario from it (`simulate.calibrate`): site-level means, SDs and
#    correlations of compliance and ITT effects, net of sampling error;
# 3. simulate the calibrated scenario and compare the estimators where the truth is known.
#
# Every sentence below that depends on a number is computed from it; the simulated ones
# come with their Monte Carlo standard error (MCSE).

# %%
import io
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display

try:
    import simulate
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path.cwd().parent))
    import simulate
from simulate import calibrate as calibration
from simulate import plots
from simulate.datasets import ak80 as load_ak80
from simulate.run_summary import summarize_directory
from simulate.runner import RunConfig, run
from simulate.store import read_rows

# One knob for the whole notebook: replications of the calibrated study.  The default makes the
# Monte Carlo error well below every difference the text describes; the test suite sets it small.
REPS = int(os.environ.get("SIMULATE_NOTEBOOK_REPS", 400))
TRUTH_SITES = 20_000  # simulated sites behind each truth (large-sample limits)
SEED = 2013
WORK = Path(tempfile.mkdtemp(prefix="simulate-notebook-"))  # run directories go here
LABEL = {"ols": "OLS", "2sls": "2SLS", "liml": "LIML", "fuller": "Fuller", "ujive": "UJIVE",
         "mbtsls": "MBTSLS", "between_ols": "the between-site regression",
         "between_intercept": "the between-site regression with an intercept", "wald": "the pooled Wald ratio"}


def show(fig):
    """Display a matplotlib Figure (the package's plots return Figures, not pyplot windows)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    display(Image(buf.getvalue()))


def listed(items):
    """'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


print(f"{REPS} replications of the calibrated study")

# %%
ak80 = load_ak80()  # shipped inside the package (simulate/data/ak80.csv.gz)
print(f"{len(ak80):,} persons; sites (yob) {sorted(ak80.yob.unique().tolist())}; "
      f"arms (qob) {sorted(ak80.qob.unique().tolist())}")
ak80.groupby(["yob", "qob"]).size().unstack().head()

# %% [markdown]
# ## 1. Analyse: every estimator on the real data
#
# OLS (with year-of-birth fixed effects) is the confounded baseline.  The IV estimators
# use the 30 site-by-quarter instruments.  The intervals use site-clustered standard
# errors with $t(K-1) = t(9)$ critical values: with ten sites they are wide.

# %%
result = simulate.analyze(ak80, site="yob", treatment="qob", mediators=["education"], outcome="lwage")
result[["estimator", "mediator", "estimate", "std_error", "conf_low", "conf_high", "p_value"]].round(4)

# %%
d = result.iloc[0]
pd.Series({"first-stage F (education)": d.first_stage_f, "overidentification p (Sargan)": d.overid_p,
           "overidentification p (many instruments)": d.overid_p_many_instrument,
           "nonlinearity check p": d.nonlinearity_p,
           "smallest singular value of the compliance matrix": d.sigma_min}).round(4)

# %%
# What to look at, computed from `result` (the real data: no Monte Carlo error here).
real = result[result.mediator == "education"].set_index("estimator").estimate
robust = ["liml", "ujive", "mbtsls"]
lo, hi = sorted([real["ols"], real[robust].min()]), sorted([real["ols"], real[robust].max()])
between = min(lo[0], hi[0]) < real["2sls"] < max(lo[1], hi[1]) and all(
    (real["2sls"] - real["ols"]) * (real[e] - real["2sls"]) > 0 for e in robust)
checks = {"Sargan overidentification": d.overid_p, "many-instrument overidentification": d.overid_p_many_instrument,
          "nonlinearity": d.nonlinearity_p}
rejects = [name for name, p in checks.items() if p < 0.05]
display(Markdown(f"""
**What to look at.**  The first-stage F is {"small" if d.first_stage_f < 10 else "not small"}
({d.first_stage_f:.1f}, with 30 instruments).  2SLS ({real["2sls"]:.4f})
{"lies between OLS" if between else "does not lie between OLS"} ({real["ols"]:.4f}) and the
many-instrument-robust estimators (LIML {real["liml"]:.4f}, UJIVE {real["ujive"]:.4f}, MBTSLS
{real["mbtsls"]:.4f}){", as notebook (d) predicts" if between else ""}.
{("The " + listed(rejects) + " checks reject at 5%") if rejects else
 "The overidentification and nonlinearity checks do not reject at 5%"}
(p = {", ".join(f"{p:.3f}" for p in checks.values())}){", which with ten sites says little" if not rejects else ""}.
"""))

# %% [markdown]
# ## 2. Calibrate a scenario from the study
#
# `calibrate` computes, per site, the ITT effects of each quarter on education and on
# wages, removes their sampling variance (method of moments), and fits the effect of
# education from the errors-in-variables corrected between-site regression.  `to_toml`
# writes a runnable scenario, documented line by line (the same as
# `simulate calibrate ... > scenario.toml`).

# %%
cal = calibration.calibrate(ak80, site="yob", treatment="qob", mediators=["education"], outcome="lwage")
toml_text = calibration.to_toml(cal, name="ak80_calibrated", truth_sites=None)
print(toml_text)

# %%
calibrated = simulate.loads(toml_text)
truth = simulate.truth(calibrated, n_sites=TRUTH_SITES)
pd.DataFrame(truth.to_records()).round(4)

# %% [markdown]
# The calibrated scenario has the study's ten site sizes, arm shares and dose profile;
# its ATE is the calibrated effect of education.  Some moments are not identified from
# the cell means (person-level effect SDs, the within-site correlation of assumption
# vii.a, the between-site compliance-effect correlation of ix) and are left at zero; a
# stress test of the calibrated scenario (`simulate stress-test`, notebook (c)) turns
# them on one at a time.
#
# ## 3. Simulate the calibrated study
#
# `REPS` replications of the whole study (329,509 simulated persons each), every estimator
# on the same data, compared with the known ATE.  The table gives each measure and, in the
# `*_mcse` columns, its Monte Carlo standard error.

# %%
MEASURES = ["mean_estimate", "bias", "relative_bias", "empirical_se", "model_se", "rmse", "coverage"]
out = WORK / "ak80"
run(calibrated, out, RunConfig(reps=REPS, seed=SEED, jobs=1, quiet=True), truth_sites=TRUTH_SITES)
summary = summarize_directory(out)
s = summary[(summary.mediator == "education") & (summary.target.isin(["ate", "none"]))
            & summary.measure.isin(MEASURES)]
comparison = s.pivot(index="estimator", columns="measure", values="value")[MEASURES]
mcse = s.pivot(index="estimator", columns="measure", values="mcse")[MEASURES].add_suffix("_mcse")
comparison = comparison.join(mcse[["bias_mcse", "relative_bias_mcse", "rmse_mcse"]])
comparison["real_data_estimate"] = real
comparison.sort_values("rmse").round(4)

# %%
rows = read_rows(out)
show(plots.sampling_distribution_plot(rows, cell=0, mediator="education", truth=truth,
                                      estimators=["ols", "2sls", "liml", "ujive", "mbtsls",
                                                  "between_intercept", "wald"],
                                      where="AK80 calibrated"))

# %%
# What to look at: every claim below is decided from the table above, bias by its 95% Monte Carlo
# interval (bias ± 1.96 MCSE): "centred" only where that interval covers zero.
c = comparison


def bias_words(e):
    """'centred (bias +0.1% ± 0.4% of the ATE)' or 'biased upward by 9.6% ± 1.1% of the ATE'."""
    rel, err = c.relative_bias[e], 1.96 * c.relative_bias_mcse[e]
    if abs(rel) <= err:
        return f"centred (bias {rel:+.1f}% ± {err:.1f}% of the ATE)"
    return f"biased {'upward' if rel > 0 else 'downward'} by {abs(rel):.1f}% ± {err:.1f}% of the ATE"


ols_biased = abs(c.bias["ols"]) > 1.96 * c.bias_mcse["ols"]
pull = c.bias["2sls"] / c.bias["ols"]  # the share of OLS's bias that 2SLS keeps
pulled = ols_biased and abs(c.bias["2sls"]) > 1.96 * c.bias_mcse["2sls"] and 0 < pull < 1
robust_words = "; ".join(f"{LABEL[e]} is {bias_words(e)}" for e in robust)
wider = [LABEL[e] for e in robust if c.empirical_se[e] > c.empirical_se["2sls"]]
spread = c.empirical_se.drop(["ols"])
noisiest = spread.idxmax()
mc_small = (1.96 * c.bias_mcse[robust + ["2sls"]]).max()
display(Markdown(f"""
**What to look at.**  In the simulated study the truth is known (the calibrated ATE,
{truth.ate[0]:.4f}), so each estimator's bias, spread and coverage can be read off, with {REPS} replications.
OLS is {bias_words("ols")}{" (the calibrated confounding)" if ols_biased else ""}.
2SLS is {bias_words("2sls")}{f": pulled toward OLS, it keeps {pull:.0%} of OLS's bias, by the thirty weak instruments"
                              if pulled else ""}.
Among the many-instrument-robust estimators, {robust_words}.
{(listed(wider) + (" is" if len(wider) == 1 else " are") + " more spread out than 2SLS (empirical SE "
  + ", ".join(f"{c.empirical_se[e]:.4f}" for e in robust if c.empirical_se[e] > c.empirical_se["2sls"])
  + f" against {c.empirical_se['2sls']:.4f}).") if wider else "None of them is more spread out than 2SLS."}
The noisiest estimator is {LABEL[noisiest]} (empirical SE {spread[noisiest]:.4f}, with ten sites).
Compare the last column, the estimates from the real data: is the real spread between estimators what the
simulation leads one to expect?  With {REPS} replications the simulated biases of the IV estimators are known
to within {mc_small:.4f} (the largest 95% Monte Carlo half-width above; the ATE is {truth.ate[0]:.4f}); for a
sharper answer raise `REPS` (the half-width shrinks as $1/\\sqrt{{\\text{{REPS}}}}$).
"""))
