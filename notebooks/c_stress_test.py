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
# # (c) Stress-testing a planned design
#
# A reviewer's question: *with 20 sites of 120 people and these compliance rates, how
# wrong could 2SLS be if an assumption fails, and from how strong a violation on?*
# `simulate.stress.stress_test` answers it in one call: for each of the founding paper's
# assumptions that can fail in the design, it sweeps the assumption's dial from 0 (the
# assumption holds) to a severe value, runs every estimator on the same simulated trials,
# and gives a **verdict** per estimator and mediator, decided from the exact large-sample
# truth first (the identification bias along the dial) and from the Monte Carlo measures
# only where their Monte Carlo interval excludes the threshold (bias beyond 10% of the
# effect, coverage below 90%, RMSE beyond three times the best IV estimator's); otherwise
# it says *cannot tell*, and replications are added where that would decide it.
#
# The same from a shell: `simulate stress-test design.toml --out results`.

# %%
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display

try:
    import simulate  # noqa: F401  (the package whose stress test this notebook runs)
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path.cwd().parent))
from simulate.stress import stress_test

# One knob for the whole notebook: replications per dial value (the stress test adds up to
# four times as many where a verdict needs them).  A Monte Carlo comparison decides a verdict
# only beyond its own 95% Monte Carlo interval, so a small count gives more `cannot_tell`
# verdicts, not bolder ones; the test suite sets it smaller still.
REPS = int(os.environ.get("SIMULATE_NOTEBOOK_REPS", 40))
TRUTH_SITES = 20_000  # simulated sites behind each truth (large-sample limits)
SEED = 2013
WORK = Path(tempfile.mkdtemp(prefix="simulate-notebook-"))  # run directories go here

print(f"{REPS} replications per dial value")

# %% [markdown]
# ## The planned design
#
# A scenario file with every dial at zero, plus a `[stress]` table: replications per dial
# value, the number of dial values (`steps`), and the simulated sites behind each truth.
# `[stress.dials]` could set a dial's severe value or leave a dial out (`= false`); the
# flagship example is `scenarios/designs/flagship.toml`.  Here the design is small so
# that it runs in class.

# %%
DESIGN = f"""
name = "planned"
description = "A planned trial: 20 sites of 120; income and hours as mediators of an outcome."
n_sites = 20
n_per_site = 120

[mediators]
names = ["income", "hours"]

[site]
compliance_mean = [1.0, 0.6]
compliance_sd = [0.4, 0.3]
effect_mean = [0.5, 0.25]

[person]
compliance_sd = [0.3, 0.3]
effect_sd = [0.2, 0.1]
confounding = 0.3

[stress]
reps = {max(REPS, 2)}
max_reps = {4 * max(REPS, 2)}
seed = {SEED}
steps = 3
truth_sites = {TRUTH_SITES}
"""
design = WORK / "design.toml"
design.write_text(DESIGN)
print(DESIGN)

# %%
out = WORK / "stress"
report = stress_test(design, out, jobs=1, quiet=True)
print("report:", Path(report).relative_to(WORK))  # WORK is a temporary folder
sorted(p.name for p in (out / "tables").glob("*.csv"))

# %% [markdown]
# ## Reading the verdicts
#
# `tables/verdicts.csv` has one row per dial x estimator x mediator.  Its `verdict` is one of
# five states: `holds` (demonstrably within the thresholds up to the severe value),
# `breaks_at` (with the dial value in `breakdown` and what drives it in `driver`:
# identification bias, finite-sample bias, coverage or RMSE), `fails_at_zero` (already
# where every assumption holds; OLS is confounded by design, and a small design can make
# an IV estimator fail too), `cannot_tell` (the replications cannot decide; `note` says
# about how many would), `not_applicable` (the dial cannot move anything in the design).
# `breakdown_exact` comes from the exact large-sample truth, without replication error;
# `breakdown_mc` from the Monte Carlo measures, decided only beyond their Monte Carlo error.

# %%
verdicts = pd.read_csv(out / "tables" / "verdicts.csv")
shown = verdicts[verdicts.mediator == "income"].assign(
    says=lambda v: v.verdict.where(v.verdict != "breaks_at", "breaks at " + v.breakdown.round(3).astype(str)))
overview = shown.pivot(index="dial", columns="estimator", values="says")[
    ["2sls", "liml", "ujive", "mbtsls", "between_ols", "between_intercept", "ols"]]
display(overview)

# %%
# the verdicts for 2SLS, with the numbers behind them
for _, v in verdicts[verdicts.estimator == "2sls"].iterrows():
    at = f" at {v.breakdown:.3g} ({v.driver})" if v.verdict == "breaks_at" else ""
    print(f"{v.dial:26s} {v.mediator:7s} {v.verdict}{at}; at the severe value {v.severe:.3g}: "
          f"identification bias {v.identification_bias_at_severe:+.3f}, "
          f"bias {v.bias_at_severe:+.3f} (MCSE {v.bias_mcse_at_severe:.3f}), "
          f"coverage {v.coverage_at_severe:.2f}, {v.reps_at_severe} replications")

# %% [markdown]
# ## One dial's figure
#
# Every dial has a bias and a coverage figure (`figures/DIAL_bias.png`,
# `figures/DIAL_coverage.png`): the measure against the dial, one line per estimator,
# with Monte Carlo bands.  Shown: assumption ii (exclusion), a direct effect of the offer
# on the outcome growing from 0 to half the outcome ITT.

# %%
display(Image(filename=str(out / "figures" / "direct_effect_bias.png"), width=900))
display(Image(filename=str(out / "figures" / "direct_effect_coverage.png"), width=900))

# What to look at, computed from the tables: the limits are exact, the interval widths Monte Carlo.
de = verdicts[(verdicts.dial == "direct_effect") & (verdicts.mediator == "income")].set_index("estimator")
measures = pd.read_csv(out / "tables" / "measures.csv")
severe = measures[(measures.dial == "direct_effect") & (measures.mediator == "income") & (measures.target == "ate")]
severe = severe[severe.value == severe.value.max()].set_index("estimator")
idb = de.identification_bias_at_severe
tol = de.tolerance["2sls"]
wider = severe.width["between_intercept"] - severe.width["2sls"]
wider_mc = 1.96 * (severe.width_mcse["between_intercept"] ** 2 + severe.width_mcse["2sls"] ** 2) ** 0.5
display(Markdown(f"""
At the severe value ({de.severe["2sls"]:.3g}) the large-sample limit of 2SLS through the origin is
{idb["2sls"]:+.3f} off the ATE: {"it credits the direct effect to the mediators" if abs(idb["2sls"]) > tol
else "within the tolerance"} (tolerance {tol:.3g}).  The between-site regression with an intercept is
{idb["between_intercept"]:+.3f} off: {"it does not" if abs(idb["between_intercept"]) <= tol else "it does too"}
(it estimates the mean direct effect as its intercept), {"at the price of wider intervals" if wider > wider_mc
else "and its intervals are not measurably wider"} (mean 95% interval width {severe.width["between_intercept"]:.3f}
against {severe.width["2sls"]:.3f} for 2SLS, ± {wider_mc:.3f} for the difference).
"""))

# %% [markdown]
# ## The report
#
# `report.html` is one self-contained page (figures embedded); `report.md` the same in
# Markdown.  Its overview table gives, per assumption and IV estimator, the verdict for each
# mediator; then the baseline (every assumption holds) with its numbers; below it each
# dial's headline, figures, verdicts and the numbers behind them.  The first part:

# %%
sections = (out / "report.md").read_text().split("\n## ")
display(Markdown("\n## ".join(sections[:5]).replace(str(WORK), "WORK")))  # title, settings, design, overview, baseline

# %%
counts = verdicts.verdict.value_counts()
undecided = verdicts[verdicts.verdict == "cannot_tell"]
display(Markdown(f"""
**What to look at.**  Read the overview row by row: which assumption does this design
tolerate, and which breaks it first?  Of the {len(verdicts)} verdicts here,
{", ".join(f"{n} are `{v}`" for v, n in counts.items())}.  {"With " + str(REPS) + " replications per dial value (up to "
+ str(4 * max(REPS, 2)) + " where they were added) " + str(len(undecided)) + " Monte Carlo comparisons cannot be "
"decided, and the verdict says so (`cannot_tell`, with the replications that would tell in `note`) instead of "
"calling the case safe" if len(undecided) else "Every Monte Carlo comparison was decided"}; the exact part
(`breakdown_exact`) does not depend on `REPS` at all.
"""))
