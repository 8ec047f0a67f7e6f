"""The scenario library: every bundled file validates, runs, and states its truth correctly.

Each file's header carries lines ``# truth [base|cell N] MEDIATOR: ate = X, limit_2sls = Y``
(cell N is 1-based, in the order ``simulate truth`` prints the grid cells), copied from
``simulate truth FILE``; the test recomputes them with :func:`simulate.truth.truth`.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from simulate.runner import RunConfig, run
from simulate.scenario import validate_file
from simulate.store import read_rows
from simulate.truth import truth

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
FILES = sorted(SCENARIOS.glob("*.toml"))
TRUTH_LINE = re.compile(
    r"^# truth \[(base|cell (\d+))\] ([A-Za-z][A-Za-z0-9_]*): ate = (-?\d+\.\d{4}), limit_2sls = (-?\d+\.\d{4})$")

# one file per assumption of the founding paper, and the study-like designs
REQUIRED = {
    "spillover", "direct_effect", "mediator_curvature", "outcome_curvature", "mediator_paths", "selection",
    "within_site_correlation", "binary_defiers", "rank_low_compliance_variance", "rank_collinear_compliance",
    "rank_fewer_sites_than_mediators", "between_site_dependence", "nonlinear_dependence", "mto",
    "welfare_to_work", "star", "many_weak_instruments", "baseline", "calibrated_ak80",
}


def _header(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def test_library_is_complete():
    assert REQUIRED <= {f.stem for f in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_header_states_what_to_look_at_and_the_truth(path):
    header = _header(path)
    assert header, f"{path.name} has no comment header"
    assert any("What to look at" in line for line in header)
    truths = [line for line in header if line.startswith("# truth")]
    assert truths, f"{path.name} states no truth line"
    for line in truths:
        assert TRUTH_LINE.match(line), f"{path.name}: malformed truth line {line!r}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_stated_truth_matches(path):
    cells = validate_file(path)
    computed = {}
    for line in _header(path):
        m = TRUTH_LINE.match(line)
        if not m:
            continue
        if m.group(1) == "base":
            assert len(cells) == 1, f"{path.name}: [base] in a file with a grid"
            index = 0
        else:
            index = int(m.group(2)) - 1
            assert 0 <= index < len(cells), f"{path.name}: no grid cell {index + 1}"
        if index not in computed:
            computed[index] = truth(cells[index].scenario)
        tr = computed[index]
        p = cells[index].scenario.mediator_names.index(m.group(3))
        assert abs(tr.ate[p] - float(m.group(4))) <= 6e-5, f"{path.name}: {line} (ate {tr.ate[p]:.5f})"
        assert abs(tr.limit_2sls[p] - float(m.group(5))) <= 6e-5, f"{path.name}: {line} (limit {tr.limit_2sls[p]:.5f})"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_cell_runs(path, tmp_path):
    cells = validate_file(path)
    reps = 3
    manifest = run(path, tmp_path / "run", RunConfig(reps=reps, seed=7, quiet=True), truth_sites=20000)
    assert len(manifest["cells"]) == len(cells)
    rows = read_rows(tmp_path / "run")
    assert set(rows["cell"]) == set(range(len(cells)))
    for c in range(len(cells)):
        assert set(rows.loc[rows["cell"] == c, "rep"]) == set(range(reps))
    status = rows["status"]
    assert status.notna().all() and (status.astype(str).str.len() > 0).all()
    if path.stem == "rank_fewer_sites_than_mediators":
        # K = 2 sites give 2 instruments for 3 mediators: the IV rows must record a failure
        iv = rows[(rows["cell"] == 0) & (rows["estimator"] == "2sls")]
        assert len(iv) and (iv["status"] != "ok").all()
    else:
        ok = rows[rows["estimator"] == "2sls"]
        assert (ok["status"] == "ok").mean() > 0.5
        assert np.isfinite(ok.loc[ok["status"] == "ok", "estimate"]).all()
