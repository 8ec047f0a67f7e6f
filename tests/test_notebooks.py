"""The teaching notebooks: stored without outputs, and each runs top to bottom.

Every notebook is executed with nbclient (kernel ``python3``, working directory
``notebooks/``) with a small replication count (``SIMULATE_NOTEBOOK_REPS``).  A probe
cell appended to the executed copy prints numbers from the notebook's namespace, which
are checked against the truth (e.g. notebook (a): the compliance-weighted estimand at
rho = 0 is the ATE; notebook (e): 2SLS on the Angrist-Krueger data is 0.0891, their
Table V).  The stored files are never modified.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulate.datasets import ak80_path

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need the 'test' extra (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need the 'test' extra (nbclient)")
pytest.importorskip("ipykernel", reason="the notebook tests need the 'test' extra (ipykernel)")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
AK80 = ak80_path()  # shipped inside the package
REPS = 5
CELL_TIMEOUT = 300
EXPECTED = {
    "a_one_site_one_mediator.ipynb",
    "b_many_sites.ipynb",
    "c_stress_test.ipynb",
    "d_many_weak_instruments.ipynb",
    "e_real_study.ipynb",
}


def notebooks() -> list[Path]:
    return sorted(NB_DIR.glob("*.ipynb"))


def test_the_five_notebooks_are_there():
    assert {p.name for p in notebooks()} == EXPECTED


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"{path.name}: code cell {i} is stored with outputs"
        assert cell.execution_count is None, f"{path.name}: code cell {i} is stored with an execution count"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    # one knob for the replication count, read from the environment
    assert "SIMULATE_NOTEBOOK_REPS" in code[0].source


def test_stored_notebooks_are_what_build_py_writes(tmp_path):
    """The cells live in notebooks/build.py; a notebook edited by hand (or a build.py not rebuilt) fails."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebook_build", NB_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.build(tmp_path)
    assert {p.name for p in written} == EXPECTED
    for p in written:
        assert p.read_text() == (NB_DIR / p.name).read_text(), f"{p.name} differs from build.py's; rebuild it"


@pytest.fixture(scope="session")
def kernel():
    """The ``python3`` kernel spec (ipykernel ships it); the tests install nothing, they skip without it."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no 'python3' Jupyter kernel: install the test extra (ipykernel) or run "
                    "'python3 -m ipykernel install --user'")
    return "python3"


def execute(name: str, probe: str, kernel: str, monkeypatch) -> dict:
    """Run notebook ``name`` top to bottom plus a probe cell; return the probe's JSON."""
    monkeypatch.setenv("SIMULATE_NOTEBOOK_REPS", str(REPS))
    nb = nbformat.read(NB_DIR / name, as_version=4)
    n_stored = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell("import json\nprint('PROBE ' + json.dumps(" + probe + "))"))
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name=kernel, allow_errors=False,
                                     resources={"metadata": {"path": str(NB_DIR)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    for i, cell in enumerate(nb.cells[:n_stored]):
        if cell.cell_type == "code":
            assert cell.execution_count is not None, f"{name}: cell {i} did not run"
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"{name}: cell {i} raised {errors[0].ename}"
    lines = [line for o in nb.cells[-1].outputs if o.output_type == "stream"
             for line in o.text.splitlines() if line.startswith("PROBE ")]
    assert len(lines) == 1, f"{name}: the probe printed {nb.cells[-1].outputs}"
    return json.loads(lines[0][len("PROBE "):])


def test_a_one_site_one_mediator(kernel, monkeypatch):
    got = execute("a_one_site_one_mediator.ipynb", """{
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


def test_b_many_sites(kernel, monkeypatch):
    got = execute("b_many_sites.ipynb", """{
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


def test_c_stress_test(kernel, monkeypatch):
    got = execute("c_stress_test.ipynb", """{
        "report": str(report), "exists": Path(report).is_file(),
        "dials": sorted(verdicts.dial.unique()),
        "ols": verdicts[(verdicts.estimator == "ols") & (verdicts.mediator == "income")].verdict.tolist(),
        "states": sorted(verdicts.verdict.unique()),
        "direct_2sls": verdicts[(verdicts.dial == "direct_effect") & (verdicts.estimator == "2sls")
                                & (verdicts.mediator == "income")].iloc[0].to_dict(),
        "rows": len(verdicts)}""", kernel, monkeypatch)
    assert got["exists"] and got["report"].endswith("report.html")
    # two continuous mediators and a binary treatment: every dial but the dose curvature and defiers
    assert got["dials"] == sorted(["spillover", "direct_effect", "outcome_curvature", "mediator_paths", "selection",
                                   "within_site_correlation", "rank", "between_site_correlation",
                                   "nonlinear_dependence"])
    assert got["rows"] == 9 * 2 * 9  # dials x mediators x estimators (no Wald with two mediators)
    # OLS is confounded by design: it fails where every assumption holds
    assert got["ols"] == ["fails_at_zero"] * 9
    assert set(got["states"]) <= {"holds", "breaks_at", "fails_at_zero", "cannot_tell", "not_applicable"}
    # a direct effect up to half the outcome ITT moves the 2SLS limit beyond 10%: the exact part says where
    d = got["direct_2sls"]
    assert d["verdict"] in ("breaks_at", "fails_at_zero") and 0 < d["breakdown_exact"] < d["severe"]


def test_d_many_weak_instruments(kernel, monkeypatch):
    got = execute("d_many_weak_instruments.ipynb", """{
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


@pytest.mark.skipif(not AK80.is_file(), reason=f"AK80 data not found at {AK80}")
def test_e_real_study(kernel, monkeypatch):
    got = execute("e_real_study.ipynb", """{
        "estimates": {f"{e}/{m}": v for e, m, v in zip(result.estimator, result.mediator, result.estimate)},
        "ate": truth.ate[0], "effect_mean": cal.effect_mean[0], "n_persons": len(ak80),
        "reps": int(summary[(summary.measure == "n_reps") & (summary.estimator == "2sls")].value.iloc[0]),
        "rows": len(comparison)}""", kernel, monkeypatch)
    assert got["n_persons"] == 329_509
    # Angrist & Krueger (1991), Table V, column (2): 2SLS 0.0891 with 30 QOB x YOB instruments
    assert got["estimates"]["2sls/education"] == pytest.approx(0.0891, abs=5e-4)
    assert got["estimates"]["ols/education"] == pytest.approx(0.0711, abs=5e-4)
    assert got["ate"] == pytest.approx(got["effect_mean"], rel=1e-5)  # TOML keeps 6 digits
    assert got["reps"] == REPS
    assert got["rows"] == 10
