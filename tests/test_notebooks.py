"""The teaching notebooks: jupytext percent-format sources, executed copies in sync, each runs top to bottom.

``notebooks/*.py`` are the sources (jupytext percent format); ``notebooks/*.ipynb`` are the same
cells executed at the default replication count, for readers who open them without running them.
The tests check that the two agree cell for cell, that the stored outputs hold no error and come
from the default count, and execute every source with nbclient (kernel ``python3``, working
directory ``notebooks/``) with a small replication count (``SIMULATE_NOTEBOOK_REPS``).  A probe
cell appended to the executed copy prints numbers from the notebook's namespace, which are checked
against the truth (e.g. notebook (a): the compliance-weighted estimand at rho = 0 is the ATE;
notebook (e): 2SLS on the Angrist-Krueger data is 0.0891, their Table V) and against the sentences
the notebook printed.  The stored files are never modified.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from simulate.datasets import ak80_path

WHAT = "the notebook tests need the 'notebooks' extra: pip install -e '.[notebooks]'"
jupytext = pytest.importorskip("jupytext", reason=f"{WHAT} (jupytext is missing)")
nbformat = pytest.importorskip("nbformat", reason=f"{WHAT} (nbformat is missing)")
nbclient = pytest.importorskip("nbclient", reason=f"{WHAT} (nbclient is missing)")
pytest.importorskip("ipykernel", reason=f"{WHAT} (ipykernel is missing)")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
AK80 = ak80_path()  # shipped inside the package
REPS = 5
CELL_TIMEOUT = 300
EXPECTED = {
    "a_one_site_one_mediator",
    "b_many_sites",
    "c_stress_test",
    "d_many_weak_instruments",
    "e_real_study",
    "f_sensitivity",
}
DEFAULT = re.compile(r'REPS = int\(os\.environ\.get\("SIMULATE_NOTEBOOK_REPS", (\d+)\)\)')


def sources() -> list[Path]:
    return sorted(p for p in NB_DIR.glob("*.py") if p.stem in EXPECTED)


def cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def test_the_six_notebooks_are_there():
    assert {p.stem for p in NB_DIR.glob("*.py")} == EXPECTED
    assert {p.stem for p in NB_DIR.glob("*.ipynb")} == EXPECTED


@pytest.mark.parametrize("path", sources(), ids=lambda p: p.stem)
def test_source_is_a_percent_notebook_with_one_knob(path):
    nb = jupytext.read(path)
    assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and any(c.cell_type == "markdown" for c in nb.cells)
    # one knob for the replication count, read from the environment, in the first code cell
    assert DEFAULT.search(code[0].source), f"{path.name}: the first code cell sets no REPS"


@pytest.mark.parametrize("path", sources(), ids=lambda p: p.stem)
def test_stored_ipynb_is_the_source_executed_at_the_default(path):
    """The .ipynb has the .py's cells (edit the .py, then re-run `jupytext --to ipynb --execute`)."""
    ipynb = path.with_suffix(".ipynb")
    stored = nbformat.read(ipynb, as_version=4)
    nbformat.validate(stored)
    assert cells(jupytext.read(ipynb)) == cells(jupytext.read(path)), (
        f"{ipynb.name} is out of sync with {path.name}: run "
        f"'jupytext --to ipynb --execute {path.relative_to(ROOT)}' from the repository root")
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{ipynb.name} is stored unexecuted"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{ipynb.name} is stored with an error: {errors[0].ename}"
    default = int(DEFAULT.search(code[0].source).group(1))
    printed = "".join(o.get("text", "") for o in code[0].outputs if o.output_type == "stream")
    assert printed.startswith(f"{default} replications"), (
        f"{ipynb.name} was executed with another replication count ({printed.strip()!r}); "
        "re-run it without SIMULATE_NOTEBOOK_REPS")


@pytest.fixture(scope="session")
def kernel():
    """The ``python3`` kernel spec (ipykernel ships it); the tests install nothing, they skip without it."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no 'python3' Jupyter kernel: install the 'notebooks' extra (ipykernel) or run "
                    "'python3 -m ipykernel install --user'")
    return "python3"


def markdown_printed(nb) -> list[str]:
    """The Markdown the executed notebook displayed from code cells (its computed sentences), one space apart."""
    return [" ".join(o["data"]["text/markdown"].split()) for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if "data" in o and "text/markdown" in o["data"]]


def execute(stem: str, probe: str, kernel: str, monkeypatch) -> tuple[dict, object]:
    """Run notebook ``stem`` (its .py source) top to bottom plus a probe cell; the probe's JSON and the notebook."""
    monkeypatch.setenv("SIMULATE_NOTEBOOK_REPS", str(REPS))
    nb = jupytext.read(NB_DIR / f"{stem}.py")
    n_stored = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell("import json\nprint('PROBE ' + json.dumps(" + probe + "))"))
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name=kernel, allow_errors=False,
                                     resources={"metadata": {"path": str(NB_DIR)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    for i, cell in enumerate(nb.cells[:n_stored]):
        if cell.cell_type == "code":
            assert cell.execution_count is not None, f"{stem}: cell {i} did not run"
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"{stem}: cell {i} raised {errors[0].ename}"
    lines = [line for o in nb.cells[-1].outputs if o.output_type == "stream"
             for line in o.text.splitlines() if line.startswith("PROBE ")]
    assert len(lines) == 1, f"{stem}: the probe printed {nb.cells[-1].outputs}"
    return json.loads(lines[0][len("PROBE "):]), nb


def test_a_one_site_one_mediator(kernel, monkeypatch):
    got, nb = execute("a_one_site_one_mediator", """{
        "rho": curve.rho.tolist(), "ate": curve.ate.tolist(), "cw": curve.compliance_weighted.tolist(),
        "closed": curve.closed_form.tolist(), "wald": sims.mean_wald.tolist(),
        "defier": defier_curve.defier_share.tolist(), "late": defier_curve.late.tolist(),
        "iv": defier_curve.iv_estimand.tolist(), "defier_ate": defier_curve.ate.tolist(), "reps": REPS}""",
                      kernel, monkeypatch)
    assert got["reps"] == REPS
    assert got["rho"][0] == 0.0
    # where assumption vii.a holds the compliance-weighted estimand is the ATE ...
    assert got["cw"][0] == pytest.approx(got["ate"][0], abs=1e-12)
    assert got["ate"] == pytest.approx([0.5] * len(got["rho"]), abs=1e-12)
    # ... and otherwise delta + rho sd(Gamma) sd(Delta) / gamma = 0.5 + 0.2 rho
    assert got["cw"] == pytest.approx([0.5 + 0.2 * r for r in got["rho"]], abs=1e-9)
    # the simulated Wald ratio follows the compliance-weighted estimand, not the ATE, at rho = 0.9
    assert abs(got["wald"][-1] - got["cw"][-1]) < abs(got["wald"][-1] - got["ate"][-1])
    # without defiers IV recovers the LATE; with 20% defiers it does not; the LATE does not move
    assert got["defier"][0] == 0.0
    assert got["iv"][0] == pytest.approx(got["late"][0], abs=1e-9)
    assert got["late"][0] > got["defier_ate"][0] + 0.02  # compliers gain more: LATE > ATE
    assert got["iv"][-1] > got["late"][-1] + 0.1
    assert got["late"] == pytest.approx([got["late"][0]] * len(got["late"]), abs=1e-9)
    said = "\n".join(markdown_printed(nb))
    assert "the LATE stays put" in said and "the IV estimand climbs" in said


def test_b_many_sites(kernel, monkeypatch):
    got, nb = execute("b_many_sites", """{
        "limits": limits.set_index("scenario").to_dict("index"),
        "rate": power.rejection_rate.tolist(), "n": power.n.tolist(), "cells": len(cells), "reps": REPS}""",
                      kernel, monkeypatch)
    lim = got["limits"]
    held = lim["assumptions hold"]
    assert held["limit_2sls"] == pytest.approx(held["ate"], abs=1e-6)
    direct = lim["ii: direct effect 0.3"]
    # a direct effect biases 2SLS through the origin, not the between-site regression with an intercept
    assert direct["limit_2sls"] > direct["ate"] + 0.1
    assert direct["limit_between_intercept"] == pytest.approx(direct["ate"], abs=0.01)
    assert lim["ix: between-site correlation 0.6"]["identification_bias_2sls"] > 0.03
    assert lim["ix: nonlinear dependence 1.5"]["identification_bias_2sls"] > 0.02
    assert got["cells"] == 15 and len(got["rate"]) == 15
    assert got["n"] == [REPS] * 15
    assert all(0.0 <= r <= 1.0 for r in got["rate"])
    said = "\n".join(markdown_printed(nb))
    assert "The direct effect biases 2SLS through the origin by" in said
    assert "leaves the between-site regression with an intercept within" in said


@pytest.mark.slow  # about 65 s on two cores: the notebook runs a whole stress test
def test_c_stress_test(kernel, monkeypatch):
    got, nb = execute("c_stress_test", """{
        "report": str(report), "exists": Path(report).is_file(),
        "dials": sorted(verdicts.dial.unique()),
        "ols": verdicts[(verdicts.estimator == "ols") & (verdicts.mediator == "income")].verdict.tolist(),
        "states": sorted(verdicts.verdict.unique()),
        "direct_2sls": verdicts[(verdicts.dial == "direct_effect") & (verdicts.estimator == "2sls")
                                & (verdicts.mediator == "income")].iloc[0].to_dict(),
        "rows": len(verdicts), "cannot_tell": int((verdicts.verdict == "cannot_tell").sum())}""",
                      kernel, monkeypatch)
    assert got["exists"] and got["report"].endswith("report.html")
    # two continuous mediators and a binary treatment: every dial but the dose curvature and defiers
    assert got["dials"] == sorted(["spillover", "spillover_treated", "direct_effect", "outcome_curvature",
                                   "mediator_interaction", "mediator_paths", "path_site_correlation", "selection",
                                   "within_site_correlation", "rank", "between_site_correlation", "site_skew",
                                   "site_heavy_tails", "nonlinear_dependence", "cross_dependence"])
    # dials x mediators x estimators (no Wald and no bivariate random-coefficient IV with two mediators)
    assert got["rows"] == 15 * 2 * 10
    # OLS is confounded by design: it fails where every assumption holds
    assert got["ols"] == ["fails_at_zero"] * 15
    assert set(got["states"]) <= {"holds", "breaks_at", "fails_at_zero", "cannot_tell", "not_applicable"}
    # a direct effect up to half the outcome ITT moves the 2SLS limit beyond 10%: the exact part says where
    d = got["direct_2sls"]
    assert d["verdict"] in ("breaks_at", "fails_at_zero") and 0 < d["breakdown_exact"] < d["severe"]
    said = "\n".join(markdown_printed(nb))
    assert "it credits the direct effect to the mediators" in said
    assert (f"{got['cannot_tell']} Monte Carlo comparisons cannot be decided" in said) == (got["cannot_tell"] > 0)


def test_d_many_weak_instruments(kernel, monkeypatch):
    got, nb = execute("d_many_weak_instruments", """{
        "bias": bias_sites.to_dict("list"), "f": f.iloc[:, 0].tolist(),
        "sd_bias": bias_sd.to_dict("list")}""", kernel, monkeypatch)
    b = got["bias"]
    # 2SLS drifts toward OLS as the same persons are spread over more sites
    assert b["2sls"][-1] > b["2sls"][0] + 0.15
    assert min(b["ols"]) > 0.4
    assert b["2sls"][-1] < b["ols"][-1]
    assert abs(b["ujive"][-1]) < b["2sls"][-1] - 0.15
    assert got["f"][0] > got["f"][-1]
    assert got["sd_bias"]["2sls"][-1] > got["sd_bias"]["2sls"][0]
    said = "\n".join(markdown_printed(nb))
    assert "OLS is biased by the confounding whatever the design" in said
    assert "the identification bias is zero" in said


@pytest.mark.skipif(not AK80.is_file(), reason=f"AK80 data not found at {AK80}")
def test_e_real_study(kernel, monkeypatch):
    got, nb = execute("e_real_study", """{
        "estimates": {f"{e}/{m}": v for e, m, v in zip(result.estimator, result.mediator, result.estimate)},
        "ate": truth.ate[0], "effect_mean": cal.effect_mean[0], "n_persons": len(ak80),
        "reps": int(summary[(summary.measure == "n_reps") & (summary.estimator == "2sls")].value.iloc[0]),
        "rows": len(comparison), "relative_bias": comparison.relative_bias.to_dict(),
        "relative_bias_mcse": comparison.relative_bias_mcse.to_dict()}""",
                      kernel, monkeypatch)
    assert got["n_persons"] == 329_509
    # Angrist & Krueger (1991), Table V, column (2): 2SLS 0.0891 with 30 QOB x YOB instruments
    assert got["estimates"]["2sls/education"] == pytest.approx(0.0891, abs=5e-4)
    assert got["estimates"]["ols/education"] == pytest.approx(0.0711, abs=5e-4)
    assert got["ate"] == pytest.approx(got["effect_mean"], rel=1e-5)  # TOML keeps 6 digits
    assert got["reps"] == REPS
    assert got["rows"] == 12  # every estimator (one mediator)
    # issue 17: "centred" is said of an estimator exactly where its bias interval covers zero
    said = markdown_printed(nb)[-1]
    for e, name in (("liml", "LIML"), ("ujive", "UJIVE"), ("mbtsls", "MBTSLS")):
        covers = abs(got["relative_bias"][e]) <= 1.96 * got["relative_bias_mcse"][e]
        assert (f"{name} is centred" in said) == covers, (e, said)
        assert (f"{name} is biased" in said) == (not covers), (e, said)
