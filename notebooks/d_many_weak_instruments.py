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
# # (d) Many weak instruments: 2SLS, LIML, UJIVE and MBTSLS
#
# Every site adds a site-by-treatment instrument.  With many small sites each instrument
# is weak, and 2SLS is biased toward OLS in finite samples: roughly, its bias is the OLS
# bias times $K L / (\mu^2 + K L)$, with $\mu^2$ the concentration parameter (first-stage
# signal) and $K L$ the number of instruments.  All of that bias is **finite-sample
# bias**: the large-sample limits of every IV estimator here equal the ATE.  LIML,
# Fuller, the jackknife IV (UJIVE, Kolesar 2013) and the modified bias-corrected 2SLS (MBTSLS) of Kolesar,
# Chetty, Friedman, Glaeser & Imbens (2015) are built to resist it.
#
# Two sweeps of the bundled `many_weak_instruments` scenario (compliance 0.3, strong
# confounding, corr(M(0), Y(0)) = 0.6):
#
# 1. **sites multiply** at a fixed total of 8,000 persons (20 sites of 400 ... 400 sites of 20);
# 2. **compliance variance shrinks** between 200 sites of 40.
#
# Every sentence below that depends on a simulated number is computed from it, with its
# Monte Carlo standard error (MCSE): "near the ATE" means that the bias's 95% Monte Carlo
# interval (bias ± 1.96 MCSE) covers zero.

# %%
import io
import os
import sys
import tempfile
import tomllib
from pathlib import Path

from IPython.display import Image, Markdown, display

try:
    import simulate
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path.cwd().parent))
    import simulate
from simulate import plots
from simulate.datasets import scenario_dir
from simulate.run_summary import summarize_directory
from simulate.runner import RunConfig, run
from simulate.store import read_rows

# One knob for the whole notebook: replications per grid cell.  The default makes the Monte
# Carlo error well below every difference the text describes; the test suite sets it small.
REPS = int(os.environ.get("SIMULATE_NOTEBOOK_REPS", 300))
TRUTH_SITES = 20_000  # simulated sites behind each truth (large-sample limits)
SEED = 2013
SCENARIOS = scenario_dir()  # the bundled scenario library
WORK = Path(tempfile.mkdtemp(prefix="simulate-notebook-"))  # run directories go here
IV = ["ols", "2sls", "liml", "fuller", "ujive", "mbtsls"]
ROBUST = ["liml", "fuller", "ujive", "mbtsls"]
LABEL = {"ols": "OLS", "2sls": "2SLS", "liml": "LIML", "fuller": "Fuller", "ujive": "UJIVE",
         "mbtsls": "MBTSLS",
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


print(f"{REPS} replications per grid cell")

# %%
raw = tomllib.loads((SCENARIOS / "many_weak_instruments.toml").read_text())
TOTAL = 8_000
SITES = [20, 50, 100, 200, 400]
raw["grid"] = {"n_sites": SITES, "n_per_site": [TOTAL // k for k in SITES], "zip": [["n_sites", "n_per_site"]]}
sites_cells = simulate.expand_grid(raw, "many_weak_instruments (sites multiply)")
out_sites = WORK / "sites"
run(sites_cells, out_sites, RunConfig(reps=REPS, seed=SEED, jobs=1, quiet=True), truth_sites=TRUTH_SITES)
sites_summary = summarize_directory(out_sites)


def table(summary, cells, measure, target="ate", estimators=IV, column="value"):
    """One measure (its `value` or its `mcse`) per cell x estimator, cells labelled by their grid values."""
    s = summary[(summary.measure == measure) & (summary.target == target) & (summary.mediator == "income")
                & summary.estimator.isin(estimators)]
    t = s.pivot(index="cell", columns="estimator", values=column)[list(estimators)]
    t.index = [", ".join(f"{p.split('.')[-1]} {v}" for p, v in c.values) for c in cells]
    return t


bias_sites = table(sites_summary, sites_cells, "bias")
bias_sites_mcse = table(sites_summary, sites_cells, "bias", column="mcse")
bias_sites.round(3)

# %%
f = table(sites_summary, sites_cells, "first_stage_f_q50", target="none", estimators=["2sls"])
f.columns = ["median first-stage F"]
f.round(2)

# %%
show(plots.bias_plot(sites_summary, "n_sites", mediator="income", estimators=IV))

# %%
# What to look at, computed from the tables above.
b, m = bias_sites, 1.96 * bias_sites_mcse  # bias and its 95% Monte Carlo half-width, cell x estimator
centred = (b.abs() <= m)
ident = table(sites_summary, sites_cells, "identification_bias", estimators=IV[1:])
se_sites = table(sites_summary, sites_cells, "empirical_se", target="none")
first, last = b.index[0], b.index[-1]


def near(e, cell):
    """How estimator e stands against the ATE in one cell, with the Monte Carlo half-width."""
    word = "near the ATE" if centred.loc[cell, e] else "off the ATE"
    return f"{word} (bias {b.loc[cell, e]:+.3f} ± {m.loc[cell, e]:.3f})"


def robust_sentence(cells):
    """Which of the many-instrument-robust estimators stay near the ATE in every cell, and where the others miss."""
    held = [LABEL[e] for e in ROBUST if centred.loc[cells, e].all()]
    words = []
    if held:
        words.append(f"{listed(held)} stay near the ATE in every cell (their 95% Monte Carlo intervals cover zero)")
    for e in ROBUST:
        where = [c for c in cells if not centred.loc[c, e]]
        if where:
            worst = max(where, key=lambda c: abs(b.loc[c, e]))
            words.append(f"{LABEL[e]} is off the ATE in {len(where)} of {len(cells)} cells (at most "
                         f"{b.loc[worst, e]:+.3f} ± {m.loc[worst, e]:.3f}, with {worst}, against 2SLS's "
                         f"{b.loc[worst, '2sls']:+.3f} there)")
    return "; ".join(words)


wider = [LABEL[e] for e in ROBUST if (se_sites[e] > se_sites["2sls"]).all()]
display(Markdown(f"""
**What to look at.**  OLS is {"biased by the confounding whatever the design" if (~centred["ols"]).all()
else "not biased in every cell"} (bias {b["ols"].min():+.3f} to {b["ols"].max():+.3f}).  As the same
{TOTAL:,} persons are spread over more sites, the median first-stage F
{"falls" if f.iloc[:, 0].is_monotonic_decreasing else "moves"}, from {f.iloc[0, 0]:.1f} to {f.iloc[-1, 0]:.1f},
and 2SLS moves from {near("2sls", first)} with {first}, toward OLS: {near("2sls", last)} with {last}, that is
{b.loc[last, "2sls"] / b.loc[last, "ols"]:.0%} of OLS's bias.  {robust_sentence(list(b.index))}.
{(listed(wider) + " pay for it with wider sampling distributions (empirical SE above 2SLS's in every cell).")
 if wider else ""}  The decomposition below confirms that the identification bias is
{"zero" if (ident.abs() < 1e-3).all().all() else "not zero"} (largest absolute value
{ident.abs().max().max():.1g}, exact, in every cell and IV estimator): the whole bias of 2SLS is finite-sample bias.
"""))

# %%
show(plots.bias_decomposition_plot(sites_summary, "n_sites", mediator="income",
                                   estimators=["2sls", "liml", "ujive", "mbtsls"]))

# %% [markdown]
# ## Sampling distributions
#
# With 400 sites of 20 (the last cell), the violins show each estimator's estimates over
# the replications, the ATE dashed.

# %%
rows = read_rows(out_sites)
last_cell = len(sites_cells) - 1
show(plots.sampling_distribution_plot(rows, cell=last_cell, mediator="income", estimators=IV,
                                      truth=simulate.truth(sites_cells[last_cell].scenario, n_sites=TRUTH_SITES),
                                      where="400 sites of 20"))

# %%
# The tails: the ratio of the SD to the MAD (the SD a normal distribution with the same middle would
# have) is 1 for a normal sampling distribution and grows with heavy tails; its MCSE by the delta method.
mad = table(sites_summary, sites_cells, "mad", target="none").loc[last]
mad_mcse = table(sites_summary, sites_cells, "mad", target="none", column="mcse").loc[last]
sd_mcse = table(sites_summary, sites_cells, "empirical_se", target="none", column="mcse").loc[last]
tails = se_sites.loc[last] / mad
tails_mcse = tails * ((sd_mcse / se_sites.loc[last]) ** 2 + (mad_mcse / mad) ** 2) ** 0.5
heavier = tails["liml"] - tails["2sls"] > 1.96 * (tails_mcse["liml"] ** 2 + tails_mcse["2sls"] ** 2) ** 0.5
iv_se = se_sites.loc[last, IV[1:]]
tight = iv_se.idxmin() == "2sls"
liml_tails = "has heavier tails than 2SLS" if heavier else "has no measurably heavier tails than 2SLS here"
display(Markdown(f"""
**What to look at.**  2SLS is {"the most tightly concentrated IV estimator" if tight else "not the tightest"}
(empirical SE {se_sites.loc[last, "2sls"]:.3f}), but {"around the wrong value" if not centred.loc[last, "2sls"]
else "around the ATE"}: {near("2sls", last)}.  LIML {liml_tails}
(SD / MAD {tails["liml"]:.2f} ± {1.96 * tails_mcse["liml"]:.2f} against {tails["2sls"]:.2f} ±
{1.96 * tails_mcse["2sls"]:.2f}, although in theory it has no finite moments);
{listed(f"{LABEL[e]} is {near(e, last)}" for e in ["ujive", "mbtsls"])}.
"""))

# %% [markdown]
# ## Compliance variance shrinks
#
# Now 200 sites of 40, and the between-site SD of compliance falls from 0.3 to 0.  The
# site-by-treatment instruments carry the mean compliance (0.3) in every site and its
# variation between sites; as the variation disappears the instruments become redundant
# copies of the pooled one.  Watch 2SLS, the between-site regression with an intercept,
# which uses only the variation, and the pooled Wald estimator (a single instrument).

# %%
raw2 = tomllib.loads((SCENARIOS / "many_weak_instruments.toml").read_text())
raw2.update(n_sites=200, n_per_site=40)
raw2["grid"] = {"site.compliance_sd": [0.3, 0.2, 0.1, 0.05, 0.0]}
sd_cells = simulate.expand_grid(raw2, "many_weak_instruments (compliance variance)")
out_sd = WORK / "compliance_sd"
run(sd_cells, out_sd, RunConfig(reps=REPS, seed=SEED, jobs=1, quiet=True), truth_sites=TRUTH_SITES)
sd_summary = summarize_directory(out_sd)
SD_EST = IV + ["between_intercept", "wald"]
bias_sd = table(sd_summary, sd_cells, "bias", estimators=SD_EST)
bias_sd_mcse = table(sd_summary, sd_cells, "bias", estimators=SD_EST, column="mcse")
se_sd = table(sd_summary, sd_cells, "empirical_se", target="none", estimators=SD_EST)
bias_sd.round(3)

# %%
show(plots.bias_plot(sd_summary, "site.compliance_sd", mediator="income",
                     estimators=["ols", "2sls", "liml", "ujive", "mbtsls", "wald"]))

# %%
b2, m2 = bias_sd, 1.96 * bias_sd_mcse
top, bottom = b2.index[0], b2.index[-1]
drift = b2.loc[bottom, "2sls"] - b2.loc[top, "2sls"]
drifts = abs(drift) > 1.96 * (bias_sd_mcse.loc[bottom, "2sls"] ** 2 + bias_sd_mcse.loc[top, "2sls"] ** 2) ** 0.5
bi, bi_m = b2["between_intercept"], bias_sd_mcse["between_intercept"]
bi_grows = bi.iloc[-1] - bi.iloc[0] > 1.96 * (bi_m.iloc[-1] ** 2 + bi_m.iloc[0] ** 2) ** 0.5
wald_ok = (b2["wald"].abs() <= m2["wald"]).all()
display(Markdown(f"""
**What to look at.**  2SLS {"drifts further toward OLS" if drifts and drift * b2.loc[top, "ols"] > 0
else "does not drift measurably"}: its bias goes from {b2.loc[top, "2sls"]:+.3f} ± {m2.loc[top, "2sls"]:.3f}
({top}) to {b2.loc[bottom, "2sls"]:+.3f} ± {m2.loc[bottom, "2sls"]:.3f} ({bottom}).  The between-site
regression with an intercept {"loses its footing" if bi_grows else "keeps its footing"}: its bias goes from
{bi.iloc[0]:+.3f} ± {1.96 * bi_m.iloc[0]:.3f} to {bi.iloc[-1]:+.3f} ± {1.96 * bi_m.iloc[-1]:.3f}
(OLS: {b2.loc[bottom, "ols"]:+.3f}).  The pooled Wald estimator
{"does not care: its bias interval covers zero in every cell" if wald_ok else "is off the ATE in some cell"}
(bias {b2["wald"].min():+.3f} to {b2["wald"].max():+.3f}, 95% Monte Carlo half-width at most
{m2["wald"].max():.3f}; empirical SE {se_sd["wald"].min():.3f} to {se_sd["wald"].max():.3f}).
"""))

# %% [markdown]
# ## Coverage
#
# A biased estimator with a small standard error has intervals that miss.  Coverage of the
# ATE by the 95% intervals (site-clustered standard errors, $t(K-1)$), as sites multiply:

# %%
show(plots.coverage_plot(sites_summary, "n_sites", mediator="income",
                         estimators=["2sls", "liml", "ujive", "mbtsls"]))
coverage = table(sites_summary, sites_cells, "coverage", estimators=["2sls", "liml", "ujive", "mbtsls"])
coverage_mcse = table(sites_summary, sites_cells, "coverage", estimators=["2sls", "liml", "ujive",
                                                                         "mbtsls"], column="mcse")
display(Markdown(f"""
With {last} the 2SLS intervals cover the ATE in {coverage.loc[last, "2sls"]:.1%} of the replications
(MCSE {coverage_mcse.loc[last, "2sls"]:.1%}), against {coverage.loc[first, "2sls"]:.1%} with {first};
{listed(f"{LABEL[e]} {coverage.loc[last, e]:.1%}" for e in ["liml", "ujive", "mbtsls"])}
with {last}.
"""))

# %% [markdown]
# **Summary.**  Many weak instruments bias 2SLS toward OLS even when every identifying
# assumption holds.  Count the instruments against the first-stage signal before trusting
# 2SLS in a many-site study, and report LIML, UJIVE or MBTSLS beside it.
