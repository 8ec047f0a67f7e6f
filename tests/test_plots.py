"""Figures (simulate.plots): made from a small real run, then inspected as objects.

Each figure must have a title, axis labels in the paper's words, a legend naming every
estimator, and Monte Carlo bands whose edges are value +- 1.96 MCSE of the summary; coverage
plots carry the nominal level with its band; the site-level slope is the 2SLS estimate of
the replication it draws; ``simulate plot DIR`` writes PNG and PDF and fails in one line.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from simulate import plots as P
from simulate.plots import grid as plot_grid
from simulate.plots import labels as plot_labels
from simulate.replicate import replication_seed
from simulate.runner import RunConfig, run
from simulate.scenario import loads
from simulate.store import read_rows

PATH = "person.within_site_correlation"
SCENARIO = f"""
name = "plots test"
n_sites = 20
n_per_site = 60

[site]
compliance_mean = 1.0
compliance_sd = 0.4
effect_mean = 0.5

[person]
compliance_sd = 0.5
effect_sd = 0.4

[grid]
"{PATH}" = [0.0, 0.4, 0.8]
"""
REPS = 30


@pytest.fixture(scope="module")
def rundir(tmp_path_factory):
    d = tmp_path_factory.mktemp("plots")
    src = d / "scenario.toml"
    src.write_text(SCENARIO, encoding="utf-8")
    out = d / "run"
    run(src, out, RunConfig(reps=REPS, seed=7, jobs=1, quiet=True), truth_sites=20000)
    return out


@pytest.fixture(scope="module")
def summary(rundir):
    return P.load_summary(rundir)


@pytest.fixture(scope="module")
def rows(rundir):
    return read_rows(rundir)


def _title(fig: Figure) -> str:
    sup = fig.get_suptitle()
    return sup or " ".join(a.get_title() for a in fig.axes)


def _legend_texts(fig: Figure) -> list[str]:
    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def _estimators(summary, measure="bias", target="ate"):
    t = summary.table
    sel = t[(t["measure"] == measure) & (t["target"] == target) & (t["mediator"] == "M1")]
    return [e for e in plot_labels._order_estimators(sel["estimator"])
            if np.isfinite(sel.loc[sel["estimator"] == e, "value"]).any()]


def _band_of(ax, colour: str) -> PolyCollection:
    from matplotlib.colors import to_rgba

    want = to_rgba(colour)[:3]
    for coll in ax.collections:
        if isinstance(coll, PolyCollection) and len(coll.get_facecolor()):
            if np.allclose(coll.get_facecolor()[0][:3], want):
                return coll
    raise AssertionError(f"no band of colour {colour}")


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------


def test_dial_labels_use_the_papers_names():
    assert P.dial_label(PATH) == "within-site correlation corr(Γ, Δ) [assumption vii.a]"
    assert P.dial_label("site.compliance_mean[2]") == "mean compliance E[γ], mediator 2 [instrument strength]"
    assert P.dial_label("paths[1].effect_correlation").startswith("corr(path coefficient, Δ_q), path 1 [")
    assert P.dial_label("site.correlations.compliance_1:effect_2") == "corr(compliance_1, effect_2) between sites"
    assert P.dial_label("no.such.path") == "no.such.path"


def test_every_estimator_has_its_own_style():
    from simulate.estimators import ESTIMATORS

    styles = [P.ESTIMATOR_STYLES[e] for e in ESTIMATORS]
    # colour + marker tells every pair apart, and so does marker + line style (greyscale)
    assert len({(c, m) for c, m, _ in styles}) == len(ESTIMATORS)
    assert len({(m, ls) for _, m, ls in styles}) == len(ESTIMATORS)
    assert {c for c, _, _ in styles} <= set(P.OKABE_ITO.values())


# ---------------------------------------------------------------------------
# Performance against a dial
# ---------------------------------------------------------------------------


def test_bias_plot_has_title_labels_legend_and_mc_bands(summary):
    fig = P.bias_plot(summary, PATH)
    (ax,) = fig.axes
    assert "Bias against within-site correlation" in _title(fig)
    assert ax.get_xlabel() == P.DIAL_LABELS[PATH]
    assert ax.get_ylabel() == "bias (mean estimate − target) vs population ATE"
    texts = _legend_texts(fig)
    ests = _estimators(summary)
    assert len(ests) >= 9
    for e in ests:
        assert texts.count(P.ESTIMATOR_LABELS[e]) == 1, e
    assert any("Monte Carlo 95% band" in t for t in texts)
    # the band of 2SLS spans value +- 1.96 MCSE of the summary at each grid value
    t = summary.table
    sel = t[(t["measure"] == "bias") & (t["target"] == "ate") & (t["estimator"] == "2sls")]
    sel = sel.sort_values("cell")
    band = _band_of(ax, P.ESTIMATOR_STYLES["2sls"][0])
    ys = band.get_paths()[0].vertices[:, 1]
    assert np.isclose(ys.max(), (sel["value"] + P.Z95 * sel["mcse"]).max())
    assert np.isclose(ys.min(), (sel["value"] - P.Z95 * sel["mcse"]).min())
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == len(ests)
    # the zero line
    assert any(np.allclose(line.get_ydata(), 0.0) for line in ax.get_lines())
    # the 2SLS line goes through the summary's values at the grid's values
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "2SLS")
    assert np.allclose(line.get_xdata(), [0.0, 0.4, 0.8])
    assert np.allclose(line.get_ydata(), sel["value"])


def test_coverage_plot_draws_the_nominal_level_with_its_band(summary):
    fig = P.coverage_plot(summary, PATH, estimators=["2sls", "ujive"])
    (ax,) = fig.axes
    assert ax.get_ylabel().startswith("coverage")
    nominal = [ln for ln in ax.get_lines() if ln.get_label().startswith("nominal level 0.95")]
    assert len(nominal) == 1 and np.allclose(nominal[0].get_ydata(), 0.95)
    half = P.Z95 * math.sqrt(0.95 * 0.05 / REPS)
    hatched = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_hatch()]
    assert len(hatched) == 1
    ys = hatched[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(ys.min(), 0.95 - half) and np.isclose(ys.max(), 0.95 + half)
    texts = _legend_texts(fig)
    assert "2SLS" in texts and "UJIVE" in texts and "LIML" not in texts


def test_rmse_plot_and_target_free_measures(summary):
    fig = P.rmse_plot(summary, PATH)
    assert fig.axes[0].get_ylabel() == "RMSE vs population ATE"
    fig = P.dial_plot(summary, PATH, "empirical_se")  # read under target "none"
    assert fig.axes[0].get_ylabel() == "empirical SE"
    assert any(isinstance(c, PolyCollection) for c in fig.axes[0].collections)


def test_dial_plot_into_a_given_axes(summary):
    fig = Figure()
    ax = fig.subplots()
    got = P.dial_plot(summary, PATH, "bias", ax=ax, estimators=["2sls"], title="mine")
    assert got is fig
    assert ax.get_title() == "mine, mediator M1"
    assert ax.get_legend() is not None and "2SLS" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_dial_plot_errors_name_the_problem(summary):
    with pytest.raises(P.PlotError, match="not a grid path of this run"):
        P.bias_plot(summary, "n_sites")
    with pytest.raises(P.PlotError, match="measure 'nonsense' not in the summary"):
        P.dial_plot(summary, PATH, "nonsense")
    with pytest.raises(P.PlotError, match="mediator 'X'"):
        P.bias_plot(summary, PATH, mediator="X")
    bare = dataclasses.replace(summary, cells={})
    with pytest.raises(P.PlotError, match="no grid values"):
        P.bias_plot(bare, PATH)


def test_bias_decomposition_adds_up_and_bands_the_finite_sample_part(summary):
    fig = P.bias_decomposition_plot(summary, PATH)
    left, right = fig.axes
    assert "identification" in _title(fig) and left.get_xlabel() == P.DIAL_LABELS[PATH]
    assert left.get_ylabel().startswith("identification bias") and right.get_ylabel().startswith("finite-sample")
    t = summary.table
    ident = t[(t["measure"] == "identification_bias") & (t["target"] == "ate") & (t["estimator"] == "2sls")]
    ident = ident.sort_values("cell")["value"].to_numpy()
    line = next(ln for ln in left.get_lines() if ln.get_label() == "2SLS")
    assert np.allclose(line.get_ydata(), ident)
    assert ident[-1] > 0.05  # within-site correlation 0.8 biases 2SLS away from the ATE
    assert not any(isinstance(c, PolyCollection) for c in left.collections)  # exact: no band
    assert any(isinstance(c, PolyCollection) for c in right.collections)
    assert "2SLS" in _legend_texts(fig)
    assert left.get_ylim() == right.get_ylim()


def test_heatmap_of_a_two_dimensional_grid():
    cells = {}
    records = []
    c = 0
    for y in (10, 20):
        for x in (0.0, 0.5, 1.0):
            cells[c] = [(PATH, x), ("n_sites", y)]
            for med in ("M1", "M2"):
                records.append({"cell": c, "estimator": "2sls", "mediator": med, "target": "ate", "measure": "bias",
                                "value": x / y, "mcse": 0.01, "n_reps": 100})
            c += 1
    frame = pd.DataFrame.from_records(records)
    frame.attrs["cells"] = cells
    fig = P.heatmap(frame, PATH, "n_sites", "bias")
    axes = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(axes) == 2
    a = axes[0]
    assert a.get_xlabel() == P.DIAL_LABELS[PATH] and a.get_ylabel() == P.DIAL_LABELS["n_sites"]
    texts = sorted(t.get_text() for t in a.texts)
    assert texts == sorted(f"{x / y:.3g}\n±{P.Z95 * 0.01:.2g}" for y in (10, 20) for x in (0.0, 0.5, 1.0))
    assert "2SLS" in _title(fig)
    assert len(fig.axes) == 4  # two panels and their colour bars
    with pytest.raises(P.PlotError, match="not a two-dimensional grid"):
        one = frame[frame["cell"] < 3].copy()
        one.attrs["cells"] = {k: v for k, v in cells.items() if k < 3}
        P.heatmap(one, PATH, "n_sites", "bias")


def test_zipped_paths_move_together():
    cells = {0: [("binary.defier_share", 0.0), ("binary.never_share", 0.3)],
             1: [("binary.defier_share", 0.1), ("binary.never_share", 0.2)]}
    assert P.grid_dimensions(cells) == [["binary.defier_share", "binary.never_share"]]
    line, xs, fixed, companions = plot_grid._line_cells(cells, "binary.defier_share")
    assert line == [0, 1] and xs == [0.0, 0.1] and fixed == {} and companions == ["binary.never_share"]


# ---------------------------------------------------------------------------
# Replication-level figures
# ---------------------------------------------------------------------------


def test_sampling_distribution_plot(rows, rundir):
    manifest = json.loads((rundir / "manifest.json").read_text())
    ate = manifest["cells"][0]["truth"]["mediators"][0]["ate"]
    fig = P.sampling_distribution_plot(rows, cell=0, truth={"M1": ate})
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # a violin per estimator with two or more estimates of M1 (an estimator that fails in this design has none)
    ok = rows[(rows["cell"] == 0) & (rows["status"] == "ok") & (rows["mediator"] == "M1")
              & np.isfinite(rows["estimate"])]
    assert len(labels) == int((ok.groupby("estimator").size() >= 2).sum())
    assert any(lbl.startswith("2SLS") for lbl in labels)
    target = [ln for ln in ax.get_lines() if np.allclose(ln.get_xdata(), ate) and len(ln.get_xdata()) == 2]
    assert target, "no vertical line at the target"
    assert "target" in _legend_texts(fig) and "median" in _legend_texts(fig)
    assert "Sampling distributions" in _title(fig) and ax.get_xlabel()
    # without a target the mean sample ATE is marked, and said so
    fig = P.sampling_distribution_plot(rows, cell=2)
    assert "mean sample ATE" in _legend_texts(fig)


def test_zip_plot_reports_the_summary_coverage(rows, summary):
    t = summary.table
    cov = t[(t["cell"] == 2) & (t["estimator"] == "2sls") & (t["target"] == "ate")
            & (t["measure"] == "coverage")].iloc[0]
    ate = t[(t["cell"] == 2) & (t["estimator"] == "2sls") & (t["target"] == "ate")
            & (t["measure"] == "target_value")]["value"].iloc[0]
    fig = P.zip_plot(rows, cell=2, estimator="2sls", target_value=ate)
    (ax,) = fig.axes
    assert f"coverage {100 * cov['value']:.1f}%" in ax.get_title()
    lo = 100 * max(0.0, cov["value"] - P.Z95 * cov["mcse"])
    hi = 100 * min(1.0, cov["value"] + P.Z95 * cov["mcse"])
    assert f"MC 95% CI {lo:.1f}–{hi:.1f}%" in ax.get_title()
    segments = sum(len(c.get_segments()) for c in ax.collections if hasattr(c, "get_segments")
                   and not isinstance(c, PolyCollection))
    assert segments == REPS
    assert any(np.allclose(ln.get_ydata(), 95.0) for ln in ax.get_lines())  # the nominal line
    texts = _legend_texts(fig)
    assert any(t.startswith("covers") for t in texts) and any(t.startswith("misses") for t in texts)
    assert ax.get_xlabel() and ax.get_ylabel().startswith("fractional centile")


def test_site_level_slope_is_the_2sls_estimate(rows, rundir):
    from simulate.dgp import draw
    from simulate.scenario import from_dict

    manifest = json.loads((rundir / "manifest.json").read_text())
    entry = manifest["cells"][1]
    sc = from_dict(dict(entry["scenario"]))
    seed = replication_seed(manifest["seed"], entry["cell_key"], 0)
    y, M, w = P.site_itt(draw(sc, seed), sc.arms)
    slope = float((w * M[:, 0] * y).sum() / (w * M[:, 0] ** 2).sum())
    est = rows[(rows["cell"] == 1) & (rows["rep"] == 0) & (rows["estimator"] == "2sls")]["estimate"].iloc[0]
    assert slope == pytest.approx(est, rel=1e-9)
    fig = P.site_level_plot(sc, seed)
    (ax,) = fig.axes
    assert f"{slope:.3g}" in ax.get_title() and "ATE 0.5" in ax.get_title()
    assert ax.get_xlabel() == "estimated site ITT on M1 (site compliance)"
    assert ax.get_legend() is not None
    fit = next(ln for ln in ax.get_lines() if ln.get_label().startswith("fit through the origin"))
    xd, yd = fit.get_xdata(), fit.get_ydata()
    assert np.allclose(yd, slope * xd)
    assert not any("quadratic" in ln.get_label() for ln in ax.get_lines())


def test_site_level_curved_fit_and_several_mediators():
    sc = loads('name = "nl"\nn_sites = 40\nn_per_site = 80\n[site]\ncompliance_sd = 0.5\neffect_sd = 0.3\n'
               'nonlinear_dependence = 1.0\n')
    fig = P.site_level_plot(sc, 3)
    assert any("quadratic" in ln.get_label() for ln in fig.axes[0].get_lines())
    sc2 = loads('name = "two"\nn_sites = 30\nn_per_site = 60\n[treatment]\narms = 3\narm_shares = [0.4, 0.3, 0.3]\n'
                '[mediators]\nnames = ["a", "b"]\n[site]\ncompliance_mean = [1.0, 0.5]\ncompliance_sd = [0.4, 0.3]\n')
    fig = P.site_level_plot(sc2, 1)
    assert len(fig.axes) == 3  # the plane, then one partial-residual panel per mediator
    main = fig.axes[0]
    assert "arm 2 vs control" in main.get_xlabel()
    diag = next(ln for ln in main.get_lines() if ln.get_label().startswith("45°"))
    assert np.allclose(diag.get_xdata(), diag.get_ydata())
    assert "a" in fig.axes[1].get_xlabel() and fig.axes[2].get_title().startswith("b: slope")
    assert "ATE a 1" not in fig.get_suptitle() and "ATE a 0.5" in fig.get_suptitle()


# ---------------------------------------------------------------------------
# A run directory and the command
# ---------------------------------------------------------------------------


def test_plot_directory_writes_png_and_pdf(rundir):
    files = P.plot_directory(rundir)
    names = {f.name for f in files}
    slug = "person_within_site_correlation"
    for stem in (f"dial_bias_ate_{slug}", f"dial_coverage_ate_{slug}", f"dial_rmse_ate_{slug}",
                 f"bias_decomposition_{slug}", "sampling_distribution_cell00000", "sampling_distribution_cell00002",
                 "zip_2sls_m1_cell00000", "zip_2sls_m1_cell00002", "site_level_cell00000_rep0"):
        assert f"{stem}.png" in names and f"{stem}.pdf" in names, stem
    assert not any(n.startswith("heatmap") for n in names)  # a one-dimensional grid
    for f in files:
        assert f.parent == rundir / "figures"
        head = f.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if f.suffix == ".png" else head.startswith(b"%PDF")
    # stable: a second call writes the same names
    assert {f.name for f in P.plot_directory(rundir, formats=("png",))} == {n for n in names if n.endswith(".png")}


def _cli(argv):
    """``simulate ARGV`` through the one CLI (parser and error handler); the exit code."""
    from simulate.cli import main

    return main(argv)


def test_command_errors_are_one_line(tmp_path, capsys):
    assert _cli(["plot", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simulate plot: error: ") and "no such directory" in err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifest.json").write_text(json.dumps({"cells": [{"index": 0}]}))
    assert _cli(["plot", str(tmp_path / "half")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "incomplete" in err and "--resume" in err
    (tmp_path / "empty").mkdir()
    assert _cli(["plot", str(tmp_path / "empty")]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_command_writes_figures(rundir, capsys):
    assert _cli(["plot", str(rundir), "--format", "png"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote ") and "figures" in out
    assert (rundir / "figures" / "site_level_cell00000_rep0.png").stat().st_size > 10_000


def test_dial_plot_takes_a_target_per_mediator(summary):
    # a second mediator "B" whose rows exist only under the LATE, with values of its own
    t = summary.table
    b = t[(t.mediator == "M1") & (t.target == "ate")].copy()
    b["mediator"], b["target"], b["value"] = "B", "late", b["value"] + 1.0
    both = dataclasses.replace(summary, table=pd.concat([t, b], ignore_index=True))
    fig = P.dial_plot(both, PATH, "bias", target={"M1": "ate", "B": "late"}, estimators=["2sls"])
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_title().startswith("mediator")}
    assert axes["mediator M1"].get_ylabel().endswith("vs population ATE")
    assert axes["mediator B"].get_ylabel().endswith("vs population LATE")
    line = lambda ax: ax.get_lines()[0].get_ydata()  # noqa: E731
    np.testing.assert_allclose(line(axes["mediator B"]), line(axes["mediator M1"]) + 1.0)
    assert "target" not in fig._suptitle.get_text()  # two targets: each on its own panel
    with pytest.raises(P.PlotError, match="no target 'late'"):
        P.dial_plot(summary, PATH, "bias", target={"M1": "late"})


def test_figures_take_the_summary_dataclass_as_they_take_its_frame(summary, rundir):
    from simulate.measures import Summary
    from simulate.run_summary import summarize_run

    s = summarize_run(rundir)
    assert isinstance(summary, Summary) and isinstance(s, Summary)
    assert s.level == 0.95 and {c: [tuple(v) for v in vals] for c, vals in s.cells.items()} == summary.cells
    a = P.dial_plot(s, PATH, "bias")
    b = P.dial_plot(summary.frame(), PATH, "bias")  # the long frame with its attrs, as older code passes it
    assert _title(a) == _title(b) and _legend_texts(a) == _legend_texts(b)
    band_a = _band_of(a.axes[0], P.ESTIMATOR_STYLES["2sls"][0])
    band_b = _band_of(b.axes[0], P.ESTIMATOR_STYLES["2sls"][0])
    np.testing.assert_array_equal(band_a.get_paths()[0].vertices, band_b.get_paths()[0].vertices)


def test_the_package_keeps_every_name_of_the_old_module():
    import simulate.plots.labels as labels

    for name in ("DIAL_LABELS", "MEASURE_LABELS", "TARGET_LABELS", "ESTIMATOR_LABELS", "ESTIMATOR_STYLES",
                 "OKABE_ITO", "PlotError", "dial_label", "dial_plot", "bias_plot", "coverage_plot", "rmse_plot",
                 "bias_decomposition_plot", "sampling_distribution_plot", "zip_plot", "heatmap", "site_level_plot",
                 "site_itt", "plot_directory", "load_summary", "grid_paths", "grid_dimensions", "save",
                 "Z95"):
        assert hasattr(P, name), name
    assert P.ESTIMATOR_LABELS is labels.ESTIMATOR_LABELS  # one definition: the estimator registry's
    from simulate import stress_figures

    assert stress_figures.label("ols") == "OLS"
