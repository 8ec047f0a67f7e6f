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
# # (b) Many sites: the site-level plane, what breaks it, and the nonlinearity check
#
# With sites $s = 1..K$ the site intent-to-treat effect on the outcome is
#
# $$\mathrm{ITT}_{Y,s} = \sum_p \gamma_{ps}\,\delta_{ps} + \kappa_s .$$
#
# If the site effects $\delta_{ps}$ are independent of the site compliances $\gamma_{ps}$
# (assumption **ix**) and there is no direct effect ($\kappa_s = 0$, assumption **ii**),
# then $E[\mathrm{ITT}_{Y,s} \mid \gamma_s] = \sum_p \gamma_{ps}\,\delta_p$: a plane through
# the origin whose slopes are the mediators' average effects.  2SLS with site fixed
# effects and site-by-treatment instruments *is* the weighted regression of the estimated
# site ITTs on Y on the estimated site compliances through the origin (weights
# $n_s p_s(1-p_s)$).  This notebook draws that picture (`plots.site_level_plot`), breaks it
# three ways, and measures how often the founding paper's falsification check (a
# quadratic term in the between-site regression, `nonlinearity_p`) notices.

# %%
import copy
import io
import os
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Image, Markdown, display
from matplotlib.figure import Figure

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

try:  # sliders for a class; headless runs (and installs without ipywidgets) skip them
    import ipywidgets as widgets
except ImportError:
    widgets = None

# One knob for the whole notebook: replications per grid cell.  The default makes the Monte
# Carlo error well below every difference the text describes; the test suite sets it small.
REPS = int(os.environ.get("SIMULATE_NOTEBOOK_REPS", 500))
TRUTH_SITES = 20_000  # simulated sites behind each truth (large-sample limits)
SEED = 2013
SCENARIOS = scenario_dir()  # the bundled scenario library
WORK = Path(tempfile.mkdtemp(prefix="simulate-notebook-"))  # run directories go here


def show(fig):
    """Display a matplotlib Figure (the package's plots return Figures, not pyplot windows)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    display(Image(buf.getvalue()))


print(f"{REPS} replications per grid cell")

# %% [markdown]
# ## The plane when the assumptions hold
#
# One mediator (income), 50 sites of 200 persons, site compliance $\gamma_s$ with mean 1
# and SD 0.4, site effects $\delta_s$ with mean 0.5 and SD 0.2, independent of
# $\gamma_s$.  `variant({...})` changes dotted paths of this base scenario (it builds a
# one-cell grid, so every change is validated with a message naming the field).

# %%
BASE = {
    "name": "many sites",
    "n_sites": 50,
    "n_per_site": 200,
    "mediators": {"names": ["income"]},
    "site": {"compliance_mean": 1.0, "compliance_sd": 0.4, "effect_mean": 0.5, "effect_sd": 0.2},
    "person": {"compliance_sd": 0.3, "effect_sd": 0.2, "confounding": 0.3},
}


def variant(changes=None, name=None):
    """The base scenario with dotted paths changed, e.g. {"site.nonlinear_dependence": 1.5}."""
    raw = copy.deepcopy(BASE)
    if name:
        raw["name"] = name
    if changes:
        raw["grid"] = {path: [value] for path, value in changes.items()}
    return simulate.expand_grid(raw)[0].scenario


baseline = variant()
show(plots.site_level_plot(baseline, seed=1, truth_sites=TRUTH_SITES))

# %% [markdown]
# **What to look at.**  Each dot is a site (area proportional to its 2SLS weight).  The
# blue line through the origin is the weighted fit, i.e. 2SLS; the dotted line has slope
# equal to the ATE.  Sites scatter around the line because $\delta_s$ varies and the site
# ITTs are estimated with error, but the scatter has no pattern.
#
# ## What breaks it
#
# * **ix, between-site correlation**: sites where the offer moves income more also gain
#   more from income (`site.compliance_effect_correlation = 0.6`): high-compliance sites
#   lie above the line, so the slope is too steep.
# * **ii, a direct effect**: treatment moves Y other than through income
#   (`site.direct_effect_mean = 0.3`): every site is shifted up, the line through the
#   origin tilts; a line *with* an intercept (`between_intercept`) recovers the slope.
# * **ix, nonlinear dependence**: $\delta_s$ depends on $\gamma_s$ through
#   $(z^2-1)/\sqrt 2$ with zero correlation (`site.nonlinear_dependence = 1.5`): sites far
#   from the mean compliance have larger effects, the cloud bends (red dashed quadratic).

# %%
BROKEN = {
    "ix: between-site correlation 0.6": {"site.compliance_effect_correlation": 0.6},
    "ii: direct effect 0.3": {"site.direct_effect_mean": 0.3},
    "ix: nonlinear dependence 1.5": {"site.nonlinear_dependence": 1.5},
}
fig = Figure(figsize=(12, 10), layout="constrained")
axes = fig.subplots(2, 2).ravel()
rows = []
for ax, (label, changes) in zip(axes, {"assumptions hold": {}, **BROKEN}.items()):
    sc = variant(changes, name=label)
    t = simulate.truth(sc, n_sites=TRUTH_SITES)
    plots.site_level_plot(sc, seed=1, ax=ax, truth=t)
    ax.set_title(label + "\n" + ax.get_title().split("\n")[-1], fontsize="small")
    rows.append({"scenario": label, "ate": t.ate[0], "limit_2sls": t.limit_2sls[0],
                 "limit_between_intercept": t.limit_between_intercept[0],
                 "identification_bias_2sls": t.limit_2sls[0] - t.ate[0]})
show(fig)
limits = pd.DataFrame(rows)
limits.round(4)

# %%
# What to look at, computed from `limits` (truths: no replication error; "moves" means by more than
# MOVES, 2% of the ATE, well above the error of a truth simulated with TRUTH_SITES sites).
MOVES = 0.01
lim = limits.set_index("scenario")
gap_2sls = lim.limit_2sls - lim.ate
gap_int = lim.limit_between_intercept - lim.ate


def biases(gap, label):
    """'biases 2SLS by +0.120' or 'leaves 2SLS within 0.010 of the ATE (+0.002)'."""
    return (f"biases {label} by {gap:+.3f}" if abs(gap) > MOVES else
            f"leaves {label} within {MOVES} of the ATE ({gap:+.3f})")


held, corr_, direct, nonlin = lim.index  # the four rows of the table, in order
display(Markdown(f"""
**What to look at.**  The table gives the large-sample limits (what each estimator tends
to with infinitely many sites and persons).  The gap `limit_2sls - ate` is the
identification bias: it does not shrink with more data.  Where the assumptions hold it is
{round(gap_2sls[held], 4) + 0.0:+.4f}.  The direct effect {biases(gap_2sls[direct], "2SLS through the origin")} and
{biases(gap_int[direct], "the between-site regression with an intercept")}; the between-site correlation
{biases(gap_2sls[corr_], "2SLS")} and {biases(gap_int[corr_], "the regression with an intercept")}; nonlinear
dependence {biases(gap_2sls[nonlin], "2SLS")} even though $\\mathrm{{corr}}(\\gamma_s, \\delta_s) = 0$.
"""))

# %% [markdown]
# With two mediators the plane lives in three dimensions; the plot then shows the site
# ITT on Y against the fitted plane, and one partial-residual panel per mediator.

# %%
two = simulate.load(SCENARIOS / "between_site_dependence.toml")  # base cell: the assumptions hold
show(plots.site_level_plot(two, seed=1, truth_sites=TRUTH_SITES))

# %% [markdown]
# ## Power of the nonlinearity check
#
# The founding paper suggests a falsification check for assumption ix: add the squared
# site compliances to the between-site regression and test their coefficients
# (`nonlinearity_p` in every row of a run: a Wald test with the jackknife (CR3)
# site-clustered covariance, $F(P, K - 1 - 2P)$ reference).  How often does it reject at
# 5%, as the nonlinear dependence $\lambda$ grows and as sites multiply?  The bundled
# `nonlinear_dependence` scenario, with its grid widened to a 3 x 5 grid of sites x
# $\lambda$, runs `REPS` replications per cell.

# %%
raw = tomllib.loads((SCENARIOS / "nonlinear_dependence.toml").read_text())
LAMBDAS = [0.0, 0.5, 1.0, 1.5, 2.0]
SITES = [20, 50, 100]
raw["grid"] = {"n_sites": SITES, "site.nonlinear_dependence": LAMBDAS}
cells = simulate.expand_grid(raw, "nonlinear_dependence (widened grid)")
out = WORK / "nonlinear"
run(cells, out, RunConfig(reps=REPS, seed=SEED, jobs=1, quiet=True), truth_sites=TRUTH_SITES)
rows = read_rows(out, columns=["cell", "rep", "estimator", "mediator", "nonlinearity_p"])
one = rows[(rows.estimator == "2sls") & (rows.mediator == "income")]  # the diagnostic repeats on every row
grid = pd.DataFrame([dict(c.values, cell=c.index) for c in cells])
power = (one.assign(reject=one.nonlinearity_p < 0.05)
         .groupby("cell").agg(rejection_rate=("reject", "mean"), n=("reject", "size")).reset_index()
         .merge(grid, on="cell"))
power["mcse"] = np.sqrt(power.rejection_rate * (1 - power.rejection_rate) / power.n)
power.pivot(index="site.nonlinear_dependence", columns="n_sites", values="rejection_rate")

# %%
fig = Figure(figsize=(11, 4.2), layout="constrained")
ax, bx = fig.subplots(1, 2)
for (k, g), marker in zip(power.groupby("n_sites"), "osD"):
    r, e = g.rejection_rate, 1.96 * g.mcse
    ax.errorbar(g["site.nonlinear_dependence"], r, yerr=[np.minimum(e, r), np.minimum(e, 1 - r)],
                marker=marker, capsize=3, label=f"{k} sites")
ax.axhline(0.05, color="grey", linestyle=":", label="5% (size)")
ax.set_ylim(-0.02, 1.02)
ax.set_xlabel("nonlinear dependence λ")
ax.set_ylabel("rejection rate of the nonlinearity check (5%)")
ax.set_title("Power of the falsification check (± 1.96 MCSE)")
ax.legend(fontsize="small")
summary = summarize_directory(out)
plots.bias_plot(summary, "site.nonlinear_dependence", where={"n_sites": 50}, mediator="income",
                estimators=["2sls", "between_ols", "between_intercept"], ax=bx,
                title="Bias against λ with 50 sites (target: ATE)")
show(fig)


# %%
# What to look at, computed from `power` (rejection rates, binomial MCSE) and `summary` (bias, MCSE).
size = power[power["site.nonlinear_dependence"] == 0].set_index("n_sites")
strong = power[power["site.nonlinear_dependence"] == max(LAMBDAS)].set_index("n_sites")
over = [k for k in SITES if size.rejection_rate[k] - 0.05 > 1.96 * np.sqrt(0.05 * 0.95 / REPS)]
rises_l = all(g.sort_values("site.nonlinear_dependence").rejection_rate.is_monotonic_increasing
              for _, g in power.groupby("n_sites"))
rises_k = strong.rejection_rate.is_monotonic_increasing
b50 = summary[(summary.cell.isin(power[power.n_sites == 50].cell)) & (summary.measure == "bias")
              & (summary.target == "ate") & (summary.mediator == "income")]
b50 = b50.merge(grid, on="cell")
b50 = b50[b50["site.nonlinear_dependence"] == max(LAMBDAS)].set_index("estimator")


LAM = "$\\lambda$"


def rate(r):
    return f"{r.rejection_rate:.1%} ± {1.96 * r.mcse:.1%}"


def bias50(e):
    v, h = b50.value[e], 1.96 * b50.mcse[e]
    return f"{v:+.3f} ± {h:.3f}" + ("" if abs(v) > h else ", not told apart from zero")


display(Markdown(f"""
**What to look at.**  At $\\lambda = 0$ the rejection rate is the test's *size*:
{", ".join(f"{rate(size.loc[k])} with {k} sites" for k in SITES)} (± 1.96 MCSE).  Compare it with 5%: the check
is a site-robust Wald test with an F reference, which
{("over-rejects with " + " and ".join(f"{k}" for k in over) + " sites, so read the power against the size, "
  "not against 5%") if over else "can over-reject when sites are few, but does not measurably here"}.  The rejection
rate {f"rises with {LAM} for every number of sites" if rises_l else f"does not rise steadily with {LAM}"}
and {"with the number of sites" if rises_k else "not steadily with the number of sites"}: at
$\\lambda = {max(LAMBDAS):g}$ it is {", ".join(f"{rate(strong.loc[k])} with {k} sites" for k in SITES)}; with
{SITES[0]} sites a strong nonlinearity is missed in {1 - strong.rejection_rate[SITES[0]]:.0%} of the studies.
Meanwhile (right, 50 sites, $\\lambda = {max(LAMBDAS):g}$) the bias of 2SLS is {bias50("2sls")} and
that of the between-site regression with an intercept {bias50("between_intercept")}.  A check that does not reject is
weak evidence for assumption ix when sites are few.

"""))

# %% [markdown]
# ## The full check: squares, cross-products and the origin
#
# With two mediators ix can fail *across* mediators: sites where the offer moves income
# more gain more from hours, $\mathrm{corr}(\gamma_1, \delta_2) = 0.6$ (set by name,
# `[site.correlations] "compliance_1:effect_2"`).  The squares-only check looks for the
# wrong curvature there.  Every row also carries the founding paper's check in full:
# `quadratic_p` (all squares and the cross-product $\gamma_1\gamma_2$, jointly),
# `falsification_p` (the quadratic terms and the intercept jointly: the site ITTs lie on a
# plane through the origin) and `intercept_p` (the intercept alone), each a CR3 Wald test
# with an F reference, like `nonlinearity_p`.  Below: rejection
# rates at 5% per dial value, with their MCSE
# (`simulate.estimators.falsification.rejection_rates`), where ix holds (size) and where
# it fails across mediators (power).

# %%
from simulate.estimators.falsification import rejection_rates  # noqa: E402

raw2 = tomllib.loads((SCENARIOS / "between_site_dependence.toml").read_text())
raw2["site"]["compliance_effect_correlation"] = [0.0, 0.0]
CROSS = [0.0, 0.6]
FULL_SITES = [50, 200, 400]
raw2["grid"] = {"n_sites": FULL_SITES, "site.correlations.compliance_1:effect_2": CROSS}
cells2 = simulate.expand_grid(raw2, "cross-mediator dependence")
out2 = WORK / "cross"
run(cells2, out2, RunConfig(reps=REPS, seed=SEED, jobs=1, quiet=True), truth_sites=TRUTH_SITES)
TESTS = ("nonlinearity_p", "quadratic_p", "falsification_p", "intercept_p")
rows2 = read_rows(out2, columns=["cell", "rep", "estimator", "mediator", *TESTS])
grid2 = pd.DataFrame([dict(c.values, cell=c.index) for c in cells2])
checks = rejection_rates(rows2[rows2.estimator == "2sls"], tests=TESTS).merge(grid2, on="cell")
checks["shown"] = [f"{r:.1%} ± {1.96 * m:.1%}" for r, m in zip(checks.rejection_rate, checks.mcse)]
checks.pivot(index=["site.correlations.compliance_1:effect_2", "n_sites"], columns="test", values="shown")

# %%
# What to look at, computed from `checks` (rejection rates at 5%, binomial MCSE).
cc = checks.set_index(["site.correlations.compliance_1:effect_2", "n_sites", "test"])


def at(r, k, t):
    x = cc.loc[(r, k, t)]
    return f"{x.rejection_rate:.1%} (MCSE {x.mcse:.1%})"


display(Markdown(f"""
**What to look at.**  Where ix holds (first block) the quadratic test rejects
{", ".join(f"{at(0.0, k, 'quadratic_p')} with {k} sites" for k in FULL_SITES)}: its size.  Across
mediators (corr = 0.6) the squares-only check rejects {", ".join(at(0.6, k, 'nonlinearity_p') for k in FULL_SITES)}
with {", ".join(str(k) for k in FULL_SITES)} sites, the full quadratic
{", ".join(at(0.6, k, 'quadratic_p') for k in FULL_SITES)}.  The tests with an intercept
(`intercept_p`, `falsification_p`) also react to the between-site regression's
errors-in-variables bias (estimated compliances attenuate the slopes and the intercept picks
up the difference), which does not shrink with more sites: read their rejection rates where
ix holds ({", ".join(at(0.0, k, 'falsification_p') for k in FULL_SITES)} for the joint test) before
reading them as power.
"""))

# %% [markdown]
# ## Try it: break the plane yourself

# %%
def explore(correlation=0.0, nonlinear=0.0, direct=0.0, n_sites=50):
    sc = variant({"site.compliance_effect_correlation": correlation, "site.nonlinear_dependence": nonlinear,
                  "site.direct_effect_mean": direct, "n_sites": int(n_sites)}, name="your scenario")
    show(plots.site_level_plot(sc, seed=1, truth_sites=TRUTH_SITES))


explore()  # the plain default: runs headless
if widgets is not None:
    slider = dict(continuous_update=False)
    widgets.interact(explore,
                     correlation=widgets.FloatSlider(value=0.0, min=-0.8, max=0.8, step=0.1,
                                                     description="corr(γ, δ)", **slider),
                     nonlinear=widgets.FloatSlider(value=0.0, min=-2.0, max=2.0, step=0.25,
                                                   description="λ", **slider),
                     direct=widgets.FloatSlider(value=0.0, min=0.0, max=0.5, step=0.05,
                                                description="E[κ]", **slider),
                     n_sites=widgets.IntSlider(value=50, min=10, max=200, step=10, description="sites",
                                               **slider))
