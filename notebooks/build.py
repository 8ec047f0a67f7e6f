"""Build the teaching notebooks from the cell lists below (stored without outputs).

    python notebooks/build.py

Edit the cells here, not in the .ipynb files, and rebuild: every notebook is written
with nbformat, with no outputs and no execution counts (the test suite checks both and
executes every notebook top to bottom; see ``tests/test_notebooks.py``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text: str):
    return new_code_cell(textwrap.dedent(text).strip("\n"))


def setup(*extras: str) -> str:
    """The first code cell of every notebook: imports, the replication count, a figure helper."""
    return textwrap.dedent('''
        import io
        import os
        import sys
        import tempfile
        from pathlib import Path

        import numpy as np
        import pandas as pd
        from IPython.display import Image, Markdown, display

        try:
            import simulate
        except ImportError:  # run from a checkout without `pip install -e .`
            sys.path.insert(0, str(Path.cwd().parent))
            import simulate

        # One knob for the whole notebook: replications per simulated point.  The test
        # suite sets it small; in class, 200 or more gives smooth curves.
        REPS = int(os.environ.get("SIMULATE_NOTEBOOK_REPS", 40))
        TRUTH_SITES = 20_000  # simulated sites behind each truth (large-sample limits)
        SEED = 2013
        SCENARIOS = Path("..") / "scenarios"  # the bundled scenario library, seen from notebooks/
        WORK = Path(tempfile.mkdtemp(prefix="simulate-notebook-"))  # run directories go here


        def show(fig):
            """Display a matplotlib Figure (the package's plots return Figures, not pyplot windows)."""
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
            display(Image(buf.getvalue()))
        ''').strip("\n") + "".join("\n" + textwrap.dedent(x).strip("\n") for x in extras)


WIDGETS = """
try:  # sliders for a class; headless runs (and installs without ipywidgets) skip them
    import ipywidgets as widgets
except ImportError:
    widgets = None
"""

# ---------------------------------------------------------------------------
# (a) one site, one mediator
# ---------------------------------------------------------------------------

A = [
    md(r"""
    # (a) One site, one mediator: what the IV ratio estimates

    Reardon & Raudenbush (2013) start with a single site: treatment $T$ is randomized, it
    moves a mediator $M$ by $\Gamma_i$ for person $i$, and $M$ moves the outcome $Y$ by
    $\Delta_i$.  The IV (Wald) ratio of the intent-to-treat effects,

    $$\frac{\mathrm{ITT}_Y}{\mathrm{ITT}_M} = \frac{E[\Gamma\Delta]}{E[\Gamma]}
      = \delta + \frac{\mathrm{Cov}(\Gamma, \Delta)}{\gamma},\qquad \gamma = E[\Gamma],\ \delta = E[\Delta],$$

    is the **compliance-weighted** average effect.  It equals the average treatment effect
    (ATE) $\delta$ only if persons who respond more to $T$ do not also gain more from $M$:
    assumption **vii.a** (no within-site compliance-effect covariance).

    With a **binary** mediator (take-up), the ratio is a complier average effect (LATE)
    as long as nobody takes up *only when not offered*: assumption **vii.b** (no defiers).

    This notebook draws one site with many persons and compares the truth (computed by
    `simulate.truth`, no simulation error) with simulated Wald ratios and their intervals.
    """),
    code(setup(WIDGETS, """
    from matplotlib.figure import Figure
    from simulate.replicate import replication_seed

    N_PERSONS = 4_000  # persons in the single site
    print(f"{REPS} replications per point, {N_PERSONS} persons in the site")
    """)),
    md(r"""
    ## A one-site scenario

    A scenario is a small TOML text.  Here: one site, a binary treatment (half treated), one
    continuous mediator with $\gamma = 1$ and $\delta = 0.5$; person-level SDs
    $\mathrm{sd}(\Gamma) = 0.5$, $\mathrm{sd}(\Delta) = 0.4$; the within-site correlation
    $\rho = \mathrm{corr}(\Gamma, \Delta)$ is the dial of assumption vii.a.  The errors of
    $M(0)$ and $Y(0)$ are correlated (`confounding`), so OLS of $Y$ on $M$ is biased while
    IV is not.
    """),
    code(r'''
    ONE_SITE = """
    name = "one site, one mediator"
    n_sites = 1
    n_per_site = {n}

    [mediators]
    names = ["M"]

    [site]                 # one site: its compliance and effect are fixed, not drawn
    compliance_mean = {gamma}
    compliance_sd = 0.0
    effect_mean = 0.5

    [person]
    compliance_sd = 0.5
    effect_sd = 0.4
    within_site_correlation = {rho}
    confounding = 0.3
    """


    def one_site(rho, gamma=1.0, n=N_PERSONS):
        """The one-site scenario at within-site correlation rho (and mean compliance gamma)."""
        return simulate.loads(ONE_SITE.format(rho=float(rho), gamma=float(gamma), n=int(n)))


    tr = simulate.truth(one_site(0.5), n_sites=TRUTH_SITES)
    pd.DataFrame(tr.to_records())[["mediator", "ate", "compliance_weighted", "limit_wald"]]
    '''),
    md(r"""
    ## The truth as the within-site correlation grows

    For each $\rho$ the truth gives the ATE ($\delta = 0.5$ whatever $\rho$) and the
    compliance-weighted estimand.  The closed form
    $\delta + \rho\,\mathrm{sd}(\Gamma)\,\mathrm{sd}(\Delta)/\gamma = 0.5 + 0.2\rho$
    must agree with it.
    """),
    code(r'''
    RHOS = np.round(np.linspace(0.0, 0.9, 10), 2)
    records = []
    for rho in RHOS:
        t = simulate.truth(one_site(rho), n_sites=TRUTH_SITES)
        records.append({"rho": rho, "ate": t.ate[0], "compliance_weighted": t.compliance_weighted[0],
                        "closed_form": 0.5 + rho * 0.5 * 0.4 / 1.0, "limit_wald": t.limit_wald[0]})
    curve = pd.DataFrame(records)
    assert np.allclose(curve.compliance_weighted, curve.closed_form), "truth and closed form disagree"
    curve.round(4)
    '''),
    md(r"""
    ## Simulated Wald ratios and their intervals

    Each replication draws the site's persons and computes the Wald ratio
    $\widehat{\mathrm{ITT}}_Y / \widehat{\mathrm{ITT}}_M$ (`simulate.estimate`, estimator
    `wald`).  With a single site the package's site-clustered interval is undefined
    ($K - 1 = 0$ degrees of freedom), so the 95% interval here uses the
    heteroskedasticity-robust (HC0) standard error and a normal critical value.  The same
    seeds are used at every $\rho$ (common random numbers), so the points move only because
    $\rho$ moves.
    """),
    code(r'''
    def wald_replications(sc, reps=REPS, seed=SEED):
        """Wald estimates, HC0 SEs and sample estimands of `reps` replications of one-site scenario sc."""
        out = []
        for r in range(reps):
            trial = simulate.draw(sc, replication_seed(seed, 0, r))
            e = simulate.estimate(trial.site, trial.treatment, trial.mediators, trial.outcome,
                                  estimators=["wald"], mediator_names=sc.mediator_names)
            row = e.iloc[0]
            samp = trial.sample_estimands()
            out.append({"estimate": row.estimate, "se": row.se_robust, "sample_ate": samp["ate"][0],
                        "sample_late": samp["late"][0]})
        out = pd.DataFrame(out)
        out["low"] = out.estimate - 1.96 * out.se
        out["high"] = out.estimate + 1.96 * out.se
        return out


    def covers(reps, value):
        return float(((reps.low <= value) & (value <= reps.high)).mean())


    sims = []
    for rho, ate, cw in zip(curve.rho, curve.ate, curve.compliance_weighted):
        reps = wald_replications(one_site(rho))
        sims.append({"rho": rho, "mean_wald": reps.estimate.mean(),
                     "mcse": reps.estimate.std(ddof=1) / np.sqrt(len(reps)),
                     "first_estimate": reps.estimate[0], "first_low": reps.low[0], "first_high": reps.high[0],
                     "coverage_ate": covers(reps, ate), "coverage_compliance_weighted": covers(reps, cw)})
    sims = pd.DataFrame(sims)
    sims.round(3)
    '''),
    code(r'''
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    ax.plot(curve.rho, curve.ate, color="black", linestyle=":", label="ATE δ")
    ax.plot(curve.rho, curve.compliance_weighted, color="#0072B2", linewidth=2,
            label="compliance-weighted δ + Cov(Γ,Δ)/γ (truth)")
    ax.errorbar(sims.rho, sims.mean_wald, yerr=1.96 * sims.mcse, fmt="o", color="#D55E00",
                label=f"mean Wald ratio ± 1.96 MCSE ({REPS} reps)")
    ax.errorbar(sims.rho + 0.015, sims.first_estimate,
                yerr=[sims.first_estimate - sims.first_low, sims.first_high - sims.first_estimate],
                fmt="s", color="#009E73", markersize=4, capsize=2, label="one replication, 95% CI")
    ax.set_xlabel("within-site correlation ρ = corr(Γ, Δ)")
    ax.set_ylabel("effect of M on Y")
    ax.set_title("The Wald ratio tracks the compliance-weighted estimand")
    ax.legend(fontsize="small")
    bx.plot(sims.rho, sims.coverage_ate, "o-", color="black", label="covers the ATE")
    bx.plot(sims.rho, sims.coverage_compliance_weighted, "s--", color="#0072B2",
            label="covers the compliance-weighted estimand")
    bx.axhline(0.95, color="grey", linewidth=0.8)
    bx.set_ylim(-0.02, 1.02)
    bx.set_xlabel("within-site correlation ρ")
    bx.set_ylabel("coverage of the 95% interval")
    bx.set_title("Coverage: which target does the interval aim at?")
    bx.legend(fontsize="small")
    show(fig)
    '''),
    md(r"""
    **What to look at.**  At $\rho = 0$ the two truth curves meet: the Wald ratio estimates
    the ATE.  As $\rho$ grows the compliance-weighted estimand rises by
    $\rho\,\mathrm{sd}(\Gamma)\,\mathrm{sd}(\Delta)/\gamma$, and the simulated ratios follow
    it, not the ATE.  This gap is *identification bias*: more persons shrink the intervals
    around the wrong number, so the coverage of the ATE falls while the coverage of the
    compliance-weighted estimand stays near 95%.  The bias is divided by $\gamma$: a weak
    first stage (small average compliance) magnifies it.

    ## Try it: within-site correlation and mean compliance

    The left panel shows persons' $(\Gamma_i, \Delta_i)$ in one replication.  The Wald ratio
    weights each person's $\Delta_i$ by $\Gamma_i$: when high-$\Gamma$ persons also have high
    $\Delta$, the weighted mean (blue) sits above the plain mean (the ATE, dotted).
    """),
    code(r'''
    def explore(rho=0.5, gamma=1.0):
        sc = one_site(rho, gamma)
        t = simulate.truth(sc, n_sites=TRUTH_SITES)
        trial = simulate.draw(sc, replication_seed(SEED, 0, 0))
        G, D = trial.compliance[:, 0], trial.effect[:, 0]
        e = simulate.estimate(trial.site, trial.treatment, trial.mediators, trial.outcome, estimators=["wald"])
        fig = Figure(figsize=(11, 4.2), layout="constrained")
        ax, bx = fig.subplots(1, 2)
        k = slice(0, 1500)
        ax.scatter(G[k], D[k], s=6, alpha=0.35, color="#56B4E9")
        ax.axhline(D.mean(), color="black", linestyle=":", label=f"mean Δ (sample ATE) {D.mean():.3f}")
        cw = (G * D).sum() / G.sum()
        ax.axhline(cw, color="#0072B2", linewidth=2, label=f"Γ-weighted mean of Δ {cw:.3f}")
        ax.axhline(e.estimate.iloc[0], color="#D55E00", linestyle="--",
                   label=f"Wald ratio {e.estimate.iloc[0]:.3f}")
        ax.set_xlabel("Γ_i (person's effect of T on M)")
        ax.set_ylabel("Δ_i (person's effect of M on Y)")
        ax.set_title(f"persons of one replication, ρ = {rho:.2f}, γ = {gamma:.2f}")
        ax.legend(fontsize="small", loc="upper left")
        grid = np.linspace(0, 0.9, 10)
        bx.plot(grid, 0.5 + grid * 0.5 * 0.4 / gamma, color="#0072B2", linewidth=2,
                label="compliance-weighted estimand")
        bx.axhline(0.5, color="black", linestyle=":", label="ATE")
        bx.plot([rho], [t.compliance_weighted[0]], "o", color="#D55E00", markersize=9, label="this ρ (truth)")
        bx.set_xlabel("within-site correlation ρ")
        bx.set_title(f"identification bias at this ρ: {t.compliance_weighted[0] - t.ate[0]:.3f}")
        bx.legend(fontsize="small")
        show(fig)


    explore()  # the plain default: runs headless
    if widgets is not None:
        widgets.interact(explore,
                         rho=widgets.FloatSlider(value=0.5, min=-0.9, max=0.9, step=0.05, continuous_update=False,
                                                 description="ρ"),
                         gamma=widgets.FloatSlider(value=1.0, min=0.3, max=2.0, step=0.1, continuous_update=False,
                                                   description="γ"))
    '''),
    md(r"""
    ## A binary mediator: the LATE, and what defiers do to it

    Now $M$ is take-up (0/1).  Each person is a complier, an always-taker, a never-taker or
    a defier.  Compliers here gain more from take-up than the others (within-site
    correlation 0.3 between latent compliance and $\Delta$), so the LATE, $E[\Delta \mid
    \text{complier}]$, exceeds the ATE.  With defier share $\pi_d$ and complier share
    $\pi_c$ the IV estimand is

    $$\frac{\pi_c\,E[\Delta\mid c] - \pi_d\,E[\Delta\mid d]}{\pi_c - \pi_d},$$

    which is the LATE only when $\pi_d = 0$.  Defiers here gain 0.3 less than others
    (`defier_effect_shift`); they are taken from the never-takers, so the compliers, and the
    LATE, stay the same while the IV estimand moves away.
    """),
    code(r'''
    TAKE_UP = """
    name = "one site, take-up"
    n_sites = 1
    n_per_site = {n}

    [mediators]
    names = ["takeup"]
    kind = "binary"

    [site]
    effect_mean = 0.4

    [binary]
    complier_share = 0.55
    always_share = 0.15
    never_share = {never}
    defier_share = {defier}
    defier_effect_shift = {shift}

    [person]
    effect_sd = 0.2
    within_site_correlation = 0.3
    confounding = 0.3
    """


    def take_up(defier, shift=-0.3, n=N_PERSONS):
        """One site with a binary mediator; the defiers are taken from the never-takers (0.30)."""
        return simulate.loads(TAKE_UP.format(defier=float(defier), never=round(0.30 - float(defier), 10),
                                             shift=float(shift), n=int(n)))


    DEFIERS = np.round(np.linspace(0.0, 0.2, 5), 3)
    records = []
    for d in DEFIERS:
        sc = take_up(d)
        t = simulate.truth(sc, n_sites=TRUTH_SITES)
        reps = wald_replications(sc)
        records.append({"defier_share": d, "ate": t.ate[0], "late": t.late[0], "iv_estimand": t.limit_wald[0],
                        "mean_wald": reps.estimate.mean(),
                        "mcse": reps.estimate.std(ddof=1) / np.sqrt(len(reps)),
                        "mean_sample_late": reps.sample_late.mean(),
                        "coverage_late": covers(reps, t.late[0])})
    defier_curve = pd.DataFrame(records)
    defier_curve.round(4)
    '''),
    code(r'''
    fig = Figure(figsize=(6.5, 4.4), layout="constrained")
    ax = fig.subplots()
    ax.plot(defier_curve.defier_share, defier_curve.ate, ":", color="black", label="ATE")
    ax.plot(defier_curve.defier_share, defier_curve.late, "-", color="#009E73", linewidth=2, label="LATE (compliers)")
    ax.plot(defier_curve.defier_share, defier_curve.iv_estimand, "-", color="#0072B2", linewidth=2,
            label="IV estimand (Wald limit)")
    ax.errorbar(defier_curve.defier_share, defier_curve.mean_wald, yerr=1.96 * defier_curve.mcse, fmt="o",
                color="#D55E00", label=f"mean Wald ratio ± 1.96 MCSE ({REPS} reps)")
    ax.set_xlabel("defier share π_d (taken from the never-takers)")
    ax.set_ylabel("effect of take-up on Y")
    ax.set_title("Without defiers IV recovers the LATE; with them it does not")
    ax.legend(fontsize="small")
    show(fig)
    '''),
    md(r"""
    **What to look at.**  At $\pi_d = 0$ the IV estimand equals the LATE (not the ATE: the
    LATE is a different, well-defined target).  As defiers appear, the LATE stays put, the
    ATE falls a little (defiers gain less), and the IV estimand climbs: the denominator
    $\pi_c - \pi_d$ shrinks and defiers enter with a negative weight.  The coverage of the
    LATE in the table above falls accordingly.

    ## Try it: the defier share and how much defiers gain
    """),
    code(r'''
    def explore_defiers(defier=0.1, shift=-0.3):
        sc = take_up(defier, shift)
        t = simulate.truth(sc, n_sites=TRUTH_SITES)
        trial = simulate.draw(sc, replication_seed(SEED, 0, 0))
        types = trial.complier_type[:, 0]
        names = ["complier", "always-taker", "never-taker", "defier"]
        share = [float((types == k).mean()) for k in range(4)]
        mean_effect = [float(trial.effect[types == k, 0].mean()) if (types == k).any() else np.nan for k in range(4)]
        fig = Figure(figsize=(11, 4), layout="constrained")
        ax, bx = fig.subplots(1, 2)
        ax.bar(names, share, color=["#009E73", "#E69F00", "#999999", "#D55E00"])
        ax.set_ylabel("share of persons (one replication)")
        ax.set_title(f"compliance types, defier share {defier:.2f}")
        bx.bar(names, mean_effect, color=["#009E73", "#E69F00", "#999999", "#D55E00"])
        for y, lab, st in ((t.ate[0], "ATE", ":"), (t.late[0], "LATE", "-"), (t.limit_wald[0], "IV estimand", "--")):
            bx.axhline(y, linestyle=st, color="black", linewidth=1.2, label=f"{lab} {y:.3f}")
        bx.legend(fontsize="small", loc="upper right")
        bx.set_ylabel("mean Δ by type")
        bx.set_title("effects by type and the three targets")
        show(fig)


    explore_defiers()  # the plain default: runs headless
    if widgets is not None:
        widgets.interact(explore_defiers,
                         defier=widgets.FloatSlider(value=0.1, min=0.0, max=0.29, step=0.01, continuous_update=False,
                                                    description="π_d"),
                         shift=widgets.FloatSlider(value=-0.3, min=-1.0, max=1.0, step=0.1, continuous_update=False,
                                                   description="defier shift"))
    '''),
    md(r"""
    ## Summary

    * One site: the IV ratio estimates $\delta + \mathrm{Cov}(\Gamma, \Delta)/\gamma$; it is
      the ATE only under assumption vii.a.
    * Binary mediator: the IV ratio estimates the LATE only without defiers (vii.b); it is
      the ATE only if, in addition, compliers' effects are typical.
    * Neither failure is visible in one site's data; notebook (b) shows what many sites add.
    """),
]

# ---------------------------------------------------------------------------
# (b) many sites
# ---------------------------------------------------------------------------

B = [
    md(r"""
    # (b) Many sites: the site-level plane, what breaks it, and the nonlinearity check

    With sites $s = 1..K$ the site intent-to-treat effect on the outcome is

    $$\mathrm{ITT}_{Y,s} = \sum_p \gamma_{ps}\,\delta_{ps} + \kappa_s .$$

    If the site effects $\delta_{ps}$ are independent of the site compliances $\gamma_{ps}$
    (assumption **ix**) and there is no direct effect ($\kappa_s = 0$, assumption **ii**),
    then $E[\mathrm{ITT}_{Y,s} \mid \gamma_s] = \sum_p \gamma_{ps}\,\delta_p$: a plane through
    the origin whose slopes are the mediators' average effects.  2SLS with site fixed
    effects and site-by-treatment instruments *is* the weighted regression of the estimated
    site ITTs on Y on the estimated site compliances through the origin (weights
    $n_s p_s(1-p_s)$).  This notebook draws that picture (`plots.site_level_plot`), breaks it
    three ways, and measures how often the founding paper's falsification check (a
    quadratic term in the between-site regression, `nonlinearity_p`) notices.
    """),
    code(setup(WIDGETS, """
    import copy

    from matplotlib.figure import Figure
    from simulate import plots
    from simulate.runner import RunConfig, read_rows, run
    from simulate.summary import summarize_directory

    print(f"{REPS} replications per grid cell")
    """)),
    md(r"""
    ## The plane when the assumptions hold

    One mediator (income), 50 sites of 200 persons, site compliance $\gamma_s$ with mean 1
    and SD 0.4, site effects $\delta_s$ with mean 0.5 and SD 0.2, independent of
    $\gamma_s$.  `variant({...})` changes dotted paths of this base scenario (it builds a
    one-cell grid, so every change is validated with a message naming the field).
    """),
    code(r'''
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
    '''),
    md(r"""
    **What to look at.**  Each dot is a site (area proportional to its 2SLS weight).  The
    blue line through the origin is the weighted fit, i.e. 2SLS; the dotted line has slope
    equal to the ATE.  Sites scatter around the line because $\delta_s$ varies and the site
    ITTs are estimated with error, but the scatter has no pattern.

    ## What breaks it

    * **ix, between-site correlation**: sites where the offer moves income more also gain
      more from income (`site.compliance_effect_correlation = 0.6`): high-compliance sites
      lie above the line, so the slope is too steep.
    * **ii, a direct effect**: treatment moves Y other than through income
      (`site.direct_effect_mean = 0.3`): every site is shifted up, the line through the
      origin tilts; a line *with* an intercept (`between_intercept`) recovers the slope.
    * **ix, nonlinear dependence**: $\delta_s$ depends on $\gamma_s$ through
      $(z^2-1)/\sqrt 2$ with zero correlation (`site.nonlinear_dependence = 1.5`): sites far
      from the mean compliance have larger effects, the cloud bends (red dashed quadratic).
    """),
    code(r'''
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
    '''),
    md(r"""
    **What to look at.**  The table gives the large-sample limits (what each estimator tends
    to with infinitely many sites and persons).  The gap `limit_2sls - ate` is the
    identification bias: it does not shrink with more data.  The direct effect biases 2SLS
    through the origin but not the between-site regression with an intercept; the
    between-site correlation biases both; nonlinear dependence biases 2SLS even though
    $\mathrm{corr}(\gamma_s, \delta_s) = 0$.

    With two mediators the plane lives in three dimensions; the plot then shows the site
    ITT on Y against the fitted plane, and one partial-residual panel per mediator.
    """),
    code(r'''
    two = simulate.load(SCENARIOS / "between_site_dependence.toml")  # base cell: the assumptions hold
    show(plots.site_level_plot(two, seed=1, truth_sites=TRUTH_SITES))
    '''),
    md(r"""
    ## Power of the nonlinearity check

    The founding paper suggests a falsification check for assumption ix: add the squared
    site compliances to the between-site regression and test their coefficients
    (`nonlinearity_p` in every row of a run: a site-robust Wald test, chi-square with $P$
    df).  How often does it reject at 5%, as the nonlinear dependence $\lambda$ grows and
    as sites multiply?  The bundled `nonlinear_dependence` scenario, with its grid widened
    to a 3 x 5 grid of sites x $\lambda$, runs `REPS` replications per cell.
    """),
    code(r'''
    import tomllib

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
    '''),
    code(r'''
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
    '''),
    md(r"""
    **What to look at.**  At $\lambda = 0$ the rejection rate is the test's *size*.  Compare
    it with 5%: the check is a site-robust Wald test with a chi-square reference, which
    over-rejects when sites are few (in longer runs, roughly 15% with 20 sites and 10% with
    50), so read the power against the size, not against 5%.  The rejection rate rises with
    $\lambda$ and with the number of sites; with 20 sites a strong nonlinearity is often
    missed.  Meanwhile (right, 50 sites) 2SLS and
    especially the between-site regression with an intercept are biased.  A check that
    does not reject is weak evidence for assumption ix when sites are few.

    ## Try it: break the plane yourself
    """),
    code(r'''
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
    '''),
]

# ---------------------------------------------------------------------------
# (c) stress test
# ---------------------------------------------------------------------------

C = [
    md(r"""
    # (c) Stress-testing a planned design

    A reviewer's question: *with 20 sites of 120 people and these compliance rates, how
    wrong could 2SLS be if an assumption fails, and from how strong a violation on?*
    `simulate.stress.stress_test` answers it in one call: for each of the founding paper's
    assumptions that can fail in the design, it sweeps the assumption's dial from 0 (the
    assumption holds) to a severe value, runs every estimator on the same simulated trials,
    and gives a **verdict** per estimator and mediator, decided from the exact large-sample
    truth first (the identification bias along the dial) and from the Monte Carlo measures
    only where their Monte Carlo interval excludes the threshold (bias beyond 10% of the
    effect, coverage below 90%, RMSE beyond three times the best IV estimator's); otherwise
    it says *cannot tell*, and replications are added where that would decide it.

    The same from a shell: `simulate stress-test design.toml --out results`.
    """),
    code(setup("""
    from simulate.stress import stress_test

    print(f"{REPS} replications per dial value")
    """)),
    md(r"""
    ## The planned design

    A scenario file with every dial at zero, plus a `[stress]` table: replications per dial
    value, the number of dial values (`steps`), and the simulated sites behind each truth.
    `[stress.dials]` could set a dial's severe value or leave a dial out (`= false`); the
    flagship example is `scenarios/designs/flagship.toml`.  Here the design is small so
    that it runs in class.
    """),
    code(r'''
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
    '''),
    code(r'''
    out = WORK / "stress"
    report = stress_test(design, out, jobs=1, quiet=True)
    print("report:", report)
    sorted(p.name for p in (out / "tables").glob("*.csv"))
    '''),
    md(r"""
    ## Reading the verdicts

    `tables/verdicts.csv` has one row per dial x estimator x mediator.  Its `verdict` is one of
    five states: `holds` (demonstrably within the thresholds up to the severe value),
    `breaks_at` (with the dial value in `breakdown` and what drives it in `driver`:
    identification bias, finite-sample bias, coverage or RMSE), `fails_at_zero` (already
    where every assumption holds; OLS is confounded by design, and a small design can make
    an IV estimator fail too), `cannot_tell` (the replications cannot decide; `note` says
    about how many would), `not_applicable` (the dial cannot move anything in the design).
    `breakdown_exact` comes from the exact large-sample truth, without replication error;
    `breakdown_mc` from the Monte Carlo measures, decided only beyond their Monte Carlo error.
    """),
    code(r'''
    verdicts = pd.read_csv(out / "tables" / "verdicts.csv")
    shown = verdicts[verdicts.mediator == "income"].assign(
        says=lambda v: v.verdict.where(v.verdict != "breaks_at", "breaks at " + v.breakdown.round(3).astype(str)))
    overview = shown.pivot(index="dial", columns="estimator", values="says")[
        ["2sls", "liml", "ujive", "bias_corrected_2sls", "between_ols", "between_intercept", "ols"]]
    overview
    '''),
    code(r'''
    # the verdicts for 2SLS, with the numbers behind them
    for _, v in verdicts[verdicts.estimator == "2sls"].iterrows():
        at = f" at {v.breakdown:.3g} ({v.driver})" if v.verdict == "breaks_at" else ""
        print(f"{v.dial:26s} {v.mediator:7s} {v.verdict}{at}; at the severe value {v.severe:.3g}: "
              f"identification bias {v.identification_bias_at_severe:+.3f}, "
              f"bias {v.bias_at_severe:+.3f} (MCSE {v.bias_mcse_at_severe:.3f}), "
              f"coverage {v.coverage_at_severe:.2f}, {v.reps_at_severe} replications")
    '''),
    md(r"""
    ## One dial's figure

    Every dial has a bias and a coverage figure (`figures/DIAL_bias.png`,
    `figures/DIAL_coverage.png`): the measure against the dial, one line per estimator,
    with Monte Carlo bands.  Shown: assumption ii (exclusion), a direct effect of the offer
    on the outcome growing from 0 to half the outcome ITT.  2SLS through the origin credits
    the direct effect to the mediators; the between-site regression with an intercept does
    not (it estimates the mean direct effect as its intercept), at the price of a wider
    sampling distribution.
    """),
    code(r'''
    display(Image(filename=str(out / "figures" / "direct_effect_bias.png"), width=900))
    display(Image(filename=str(out / "figures" / "direct_effect_coverage.png"), width=900))
    '''),
    md(r"""
    ## The report

    `report.html` is one self-contained page (figures embedded); `report.md` the same in
    Markdown.  Its overview table gives, per assumption and IV estimator, the verdict for each
    mediator; then the baseline (every assumption holds) with its numbers; below it each
    dial's headline, figures, verdicts and the numbers behind them.  The first part:
    """),
    code(r'''
    sections = (out / "report.md").read_text().split("\n## ")
    display(Markdown("\n## ".join(sections[:5])))  # title, settings, design, overview, baseline
    '''),
    md(r"""
    **What to look at.**  Read the overview row by row: which assumption does this design
    tolerate, and which breaks it first?  With few replications (`REPS`) many Monte Carlo
    comparisons cannot be decided, and the verdict says so (`cannot_tell`, with the
    replications that would tell) instead of calling the case safe; the exact part
    (`breakdown_exact`) does not depend on `REPS` at all.
    """),
]

# ---------------------------------------------------------------------------
# (d) many weak instruments
# ---------------------------------------------------------------------------

D = [
    md(r"""
    # (d) Many weak instruments: 2SLS, LIML, UJIVE and bias-corrected 2SLS

    Every site adds a site-by-treatment instrument.  With many small sites each instrument
    is weak, and 2SLS is biased toward OLS in finite samples: roughly, its bias is the OLS
    bias times $K L / (\mu^2 + K L)$, with $\mu^2$ the concentration parameter (first-stage
    signal) and $K L$ the number of instruments.  All of that bias is **finite-sample
    bias**: the large-sample limits of every IV estimator here equal the ATE.  LIML,
    Fuller, the jackknife IV (UJIVE, Kolesar 2013) and the bias-corrected 2SLS of Kolesar,
    Chetty, Friedman, Glaeser & Imbens (2015) are built to resist it.

    Two sweeps of the bundled `many_weak_instruments` scenario (compliance 0.3, strong
    confounding, corr(M(0), Y(0)) = 0.6):

    1. **sites multiply** at a fixed total of 8,000 persons (20 sites of 400 ... 400 sites of 20);
    2. **compliance variance shrinks** between 200 sites of 40.
    """),
    code(setup("""
    import tomllib

    from simulate import plots
    from simulate.runner import RunConfig, read_rows, run
    from simulate.summary import summarize_directory

    IV = ["ols", "2sls", "liml", "fuller", "ujive", "bias_corrected_2sls"]
    print(f"{REPS} replications per grid cell")
    """)),
    code(r'''
    raw = tomllib.loads((SCENARIOS / "many_weak_instruments.toml").read_text())
    TOTAL = 8_000
    SITES = [20, 50, 100, 200, 400]
    raw["grid"] = {"n_sites": SITES, "n_per_site": [TOTAL // k for k in SITES], "zip": [["n_sites", "n_per_site"]]}
    sites_cells = simulate.expand_grid(raw, "many_weak_instruments (sites multiply)")
    out_sites = WORK / "sites"
    run(sites_cells, out_sites, RunConfig(reps=REPS, seed=SEED, jobs=1, quiet=True), truth_sites=TRUTH_SITES)
    sites_summary = summarize_directory(out_sites)


    def table(summary, cells, measure, target="ate", estimators=IV):
        """One measure per cell x estimator, cells labelled by their grid values."""
        s = summary[(summary.measure == measure) & (summary.target == target) & (summary.mediator == "income")
                    & summary.estimator.isin(estimators)]
        t = s.pivot(index="cell", columns="estimator", values="value")[list(estimators)]
        t.index = [", ".join(f"{p.split('.')[-1]} {v}" for p, v in c.values) for c in cells]
        return t


    bias_sites = table(sites_summary, sites_cells, "bias")
    bias_sites.round(3)
    '''),
    code(r'''
    f = table(sites_summary, sites_cells, "first_stage_f_q50", target="none", estimators=["2sls"])
    f.columns = ["median first-stage F"]
    f.round(2)
    '''),
    code(r'''
    show(plots.bias_plot(sites_summary, "n_sites", mediator="income", estimators=IV))
    '''),
    md(r"""
    **What to look at.**  OLS is biased by the confounding whatever the design.  As the same
    8,000 persons are spread over more sites, the median first-stage F falls and 2SLS moves
    from near the ATE toward OLS.  LIML, Fuller, UJIVE and the bias-corrected 2SLS stay near
    the ATE (their Monte Carlo bands cover zero), at the price of wider sampling
    distributions.  The decomposition below confirms that the identification bias is zero:
    the whole bias of 2SLS is finite-sample bias.
    """),
    code(r'''
    show(plots.bias_decomposition_plot(sites_summary, "n_sites", mediator="income",
                                       estimators=["2sls", "liml", "ujive", "bias_corrected_2sls"]))
    '''),
    md(r"""
    ## Sampling distributions

    With 400 sites of 20 (the last cell), the violins show each estimator's estimates over
    the replications, the ATE dashed.  2SLS is tightly concentrated, but around the wrong
    value; LIML has heavier tails (it has no moments), UJIVE and the bias-corrected 2SLS are
    centred on the ATE.
    """),
    code(r'''
    rows = read_rows(out_sites)
    last = len(sites_cells) - 1
    show(plots.sampling_distribution_plot(rows, cell=last, mediator="income", estimators=IV,
                                          truth=simulate.truth(sites_cells[last].scenario, n_sites=TRUTH_SITES),
                                          where="400 sites of 20"))
    '''),
    md(r"""
    ## Compliance variance shrinks

    Now 200 sites of 40, and the between-site SD of compliance falls from 0.3 to 0.  The
    site-by-treatment instruments carry the mean compliance (0.3) in every site and its
    variation between sites; as the variation disappears the instruments become redundant
    copies of the pooled one.  2SLS drifts further toward OLS; the between-site regression
    with an intercept, which uses only the variation, loses its footing; the pooled Wald
    estimator (a single instrument) does not care.
    """),
    code(r'''
    raw2 = tomllib.loads((SCENARIOS / "many_weak_instruments.toml").read_text())
    raw2.update(n_sites=200, n_per_site=40)
    raw2["grid"] = {"site.compliance_sd": [0.3, 0.2, 0.1, 0.05, 0.0]}
    sd_cells = simulate.expand_grid(raw2, "many_weak_instruments (compliance variance)")
    out_sd = WORK / "compliance_sd"
    run(sd_cells, out_sd, RunConfig(reps=REPS, seed=SEED, jobs=1, quiet=True), truth_sites=TRUTH_SITES)
    sd_summary = summarize_directory(out_sd)
    bias_sd = table(sd_summary, sd_cells, "bias", estimators=IV + ["between_intercept", "wald"])
    bias_sd.round(3)
    '''),
    code(r'''
    show(plots.bias_plot(sd_summary, "site.compliance_sd", mediator="income",
                         estimators=["ols", "2sls", "liml", "ujive", "bias_corrected_2sls", "wald"]))
    '''),
    md(r"""
    ## Coverage

    A biased estimator with a small standard error has intervals that miss.  Coverage of the
    ATE by the 95% intervals (site-clustered standard errors, $t(K-1)$), as sites multiply:
    """),
    code(r'''
    show(plots.coverage_plot(sites_summary, "n_sites", mediator="income",
                             estimators=["2sls", "liml", "ujive", "bias_corrected_2sls"]))
    '''),
    md(r"""
    **Summary.**  Many weak instruments bias 2SLS toward OLS even when every identifying
    assumption holds.  Count the instruments against the first-stage signal before trusting
    2SLS in a many-site study, and report LIML, UJIVE or the bias-corrected 2SLS beside it.
    """),
]

# ---------------------------------------------------------------------------
# (e) a real study
# ---------------------------------------------------------------------------

E = [
    md(r"""
    # (e) A real study, analysed and calibrated: Angrist & Krueger (1991)

    The 1980 Census extract of men born 1930-39 (329,509 persons): **year of birth** is the
    site, **quarter of birth** a four-arm treatment (Q1 is the control arm; later quarters
    mean more compulsory schooling), **years of education** the mediator, **log weekly wage**
    the outcome.  Ten sites, three site-by-treatment instruments each.

    Three steps:

    1. analyse the data with every estimator and diagnostic (`simulate.analyze`);
    2. calibrate a scenario from it (`simulate.calibrate`): site-level means, SDs and
       correlations of compliance and ITT effects, net of sampling error;
    3. simulate the calibrated scenario and compare the estimators where the truth is known.
    """),
    code(setup("""
    from simulate import calibrate as calibration
    from simulate import plots
    from simulate.runner import RunConfig, read_rows, run
    from simulate.summary import summarize_directory

    print(f"{REPS} replications of the calibrated study")
    """)),
    code(r'''
    from simulate.datasets import ak80 as load_ak80

    ak80 = load_ak80()  # shipped inside the package (simulate/data/ak80.csv.gz)
    print(f"{len(ak80):,} persons; sites (yob) {sorted(ak80.yob.unique().tolist())}; "
          f"arms (qob) {sorted(ak80.qob.unique().tolist())}")
    ak80.groupby(["yob", "qob"]).size().unstack().head()
    '''),
    md(r"""
    ## 1. Analyse: every estimator on the real data

    OLS (with year-of-birth fixed effects) is the confounded baseline.  The IV estimators
    use the 30 site-by-quarter instruments.  The intervals use site-clustered standard
    errors with $t(K-1) = t(9)$ critical values: with ten sites they are wide.
    """),
    code(r'''
    result = simulate.analyze(ak80, site="yob", treatment="qob", mediators=["education"], outcome="lwage")
    result[["estimator", "mediator", "estimate", "std_error", "conf_low", "conf_high", "p_value"]].round(4)
    '''),
    code(r'''
    d = result.iloc[0]
    pd.Series({"first-stage F (education)": d.first_stage_f, "overidentification p (Sargan)": d.overid_p,
               "overidentification p (many instruments)": d.overid_p_many_instrument,
               "nonlinearity check p": d.nonlinearity_p,
               "smallest singular value of the compliance matrix": d.sigma_min}).round(4)
    '''),
    md(r"""
    **What to look at.**  The first-stage F is small (about 5): thirty weak instruments.
    2SLS is between OLS and the many-instrument-robust estimators (LIML, UJIVE,
    bias-corrected 2SLS), as notebook (d) predicts.  The overidentification and
    nonlinearity checks do not reject, which with ten sites says little.

    ## 2. Calibrate a scenario from the study

    `calibrate` computes, per site, the ITT effects of each quarter on education and on
    wages, removes their sampling variance (method of moments), and fits the effect of
    education from the errors-in-variables corrected between-site regression.  `to_toml`
    writes a runnable scenario, documented line by line (the same as
    `simulate calibrate ... > scenario.toml`).
    """),
    code(r'''
    cal = calibration.calibrate(ak80, site="yob", treatment="qob", mediators=["education"], outcome="lwage")
    toml_text = calibration.to_toml(cal, name="ak80_calibrated", truth_sites=None)
    print(toml_text)
    '''),
    code(r'''
    calibrated = simulate.loads(toml_text)
    truth = simulate.truth(calibrated, n_sites=TRUTH_SITES)
    pd.DataFrame(truth.to_records()).round(4)
    '''),
    md(r"""
    The calibrated scenario has the study's ten site sizes, arm shares and dose profile;
    its ATE is the calibrated effect of education.  Some moments are not identified from
    the cell means (person-level effect SDs, the within-site correlation of assumption
    vii.a, the between-site compliance-effect correlation of ix) and are left at zero; a
    stress test of the calibrated scenario (`simulate stress-test`, notebook (c)) turns
    them on one at a time.

    ## 3. Simulate the calibrated study

    `REPS` replications of the whole study (329,509 simulated persons each), every estimator
    on the same data, compared with the known ATE.
    """),
    code(r'''
    out = WORK / "ak80"
    run(calibrated, out, RunConfig(reps=REPS, seed=SEED, jobs=1, quiet=True), truth_sites=TRUTH_SITES)
    summary = summarize_directory(out)
    s = summary[(summary.mediator == "education") & (summary.target.isin(["ate", "none"]))
                & summary.measure.isin(["mean_estimate", "bias", "empirical_se", "model_se", "rmse", "coverage"])]
    comparison = s.pivot(index="estimator", columns="measure", values="value")[
        ["mean_estimate", "bias", "empirical_se", "model_se", "rmse", "coverage"]]
    comparison["real_data_estimate"] = result[result.mediator == "education"].set_index("estimator").estimate
    comparison.sort_values("rmse").round(4)
    '''),
    code(r'''
    rows = read_rows(out)
    show(plots.sampling_distribution_plot(rows, cell=0, mediator="education", truth=truth,
                                          estimators=["ols", "2sls", "liml", "ujive", "bias_corrected_2sls",
                                                      "between_intercept", "wald"],
                                          where="AK80 calibrated"))
    '''),
    md(r"""
    **What to look at.**  In the simulated study the truth is known (the calibrated ATE), so
    each estimator's bias, spread and coverage can be read off: OLS is biased (the
    calibrated confounding), 2SLS is pulled toward it by the thirty weak instruments, LIML,
    UJIVE and the bias-corrected 2SLS are centred but more spread out, and the between-site
    regression with an intercept is the noisiest (ten sites).  Compare the last column, the
    estimates from the real data: is the real spread between estimators what the simulation
    leads one to expect?  With `REPS = 200` the Monte Carlo error is small enough to answer.
    """),
]

NOTEBOOKS = {
    "a_one_site_one_mediator.ipynb": A,
    "b_many_sites.ipynb": B,
    "c_stress_test.ipynb": C,
    "d_many_weak_instruments.ipynb": D,
    "e_real_study.ipynb": E,
}


def build(folder: Path = HERE) -> list[Path]:
    written = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{name[0]}{i:02d}"  # stable ids: rebuilding gives the same file
        nbformat.validate(nb)
        path = folder / name
        nbformat.write(nb, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in build():
        print(p)
