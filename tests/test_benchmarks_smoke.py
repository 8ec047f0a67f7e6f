"""Smoke test of the benchmark harness (issue 7): ``benchmarks/run.py --quick`` runs end to end.

It checks that every section is printed and every output is written with every key; it asserts
nothing about speed (timings depend on the machine; the targets are judged by the full run).
"""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"

sys.path.insert(0, str(ROOT / "benchmarks"))
import run as bench  # noqa: E402  (the harness's own section and key lists: one place)

SECTIONS = bench.SECTIONS
JSON_KEYS = set(bench.JSON_KEYS)

pytest.importorskip("linearmodels")
pytest.importorskip("distributed")

# about 75 s on two cores (the whole harness in --quick mode): run with `python3 -m pytest -m slow`
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, str(RUN), "--quick", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, out


def test_every_section_is_printed_in_order(quick):
    stdout, _ = quick
    positions = [stdout.find(f"== {s} ==") for s in SECTIONS]
    assert all(p >= 0 for p in positions), [s for s, p in zip(SECTIONS, positions) if p < 0]
    assert positions == sorted(positions)
    for label in ("normals per replication:", "floor ratio =", "linearmodels ratio =", "speed-up 1 -> 2 workers =",
                  "dask / loky (2 workers) =", "peak memory ratio", "log-log slopes:", "cpu:", "packages:",
                  "CLI marginal cost per replication =", "CLI marginal / numpy floor =", "cold / warm ="):
        assert label in stdout, label


def test_normals_count_is_the_formula(quick):
    stdout, _ = quick
    # 50 sites x 200 persons, P = 3: 10000 x 10 + 10000 + 50 x 11
    assert "= 110,550" in stdout


def test_json_has_every_key(quick):
    _, out = quick
    res = json.loads((out / "results.json").read_text())
    assert set(res) == JSON_KEYS
    assert res["mode"] == "quick"
    assert {"cpu", "logical_cores", "python", "packages"} <= set(res["machine"])
    assert {"normals_per_replication", "pipeline_seconds_per_replication", "numpy_seconds_per_draw",
            "ratio", "kernel_normals_seconds_per_draw",
            "kernel_seconds_per_replication"} <= set(res["floor"])
    assert res["floor"]["normals_per_replication"] == 110_550
    assert {"linearmodels_seconds_per_replication", "pipeline_seconds_per_replication", "ratio",
            "estimates_equal", "max_rel_diff_estimate"} <= set(res["linearmodels"])
    assert res["linearmodels"]["estimates_equal"] is True
    assert set(res["workers"]["runs"]) == {"loky_1", "loky_2", "dask_2"}
    assert {"speedup", "dask_vs_loky"} <= set(res["workers"])
    assert [r["replications"] for r in res["memory"]["runs"]] == [100, 300, 1000]
    assert all(r["peak_rss_bytes"] > 0 for r in res["memory"]["runs"])
    assert set(res["scaling"]["slopes"]) == {"sites", "persons", "mediators"}
    assert len(res["scaling"]["rows"]) == 5 + 5 + 4
    assert set(res["targets"]) == {key for key, *_ in bench.TARGETS}
    # a difference of two short runs: finite, of either sign in quick mode (the full run judges it)
    assert math.isfinite(res["cli"]["seconds_per_replication"]) and res["cli"]["short"] < res["cli"]["long"]
    assert res["main_job"]["cold_seconds"] > 0 and res["main_job"]["warm_seconds"] > 0
    for t in res["targets"].values():
        assert {"value", "goal", "met"} <= set(t) and math.isfinite(t["value"])


def test_files_are_written(quick):
    _, out = quick
    for name in ("results.json", "ratios.csv", "scaling.csv", "memory.csv", "scaling.png", "output.txt"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "ratios.csv", newline="") as fh:
        names = [row["ratio"] for row in csv.DictReader(fh)]
    assert names == ["floor", "linearmodels", "workers", "dask_vs_loky", "memory", "cli_vs_pipeline", "cli_vs_floor",
                     "main_cold_to_warm", "main_warm_seconds"]
    assert "== 5. Scaling ==" in (out / "output.txt").read_text()
