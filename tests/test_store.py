"""The run store: part files, their repair, the manifest, atomic writes; no kernel is needed."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulate import store
from simulate.errors import RunError
from simulate.replicate import ROW_COLUMNS
from simulate.scenario import GridCell, from_dict

ROWS_PER_REP = 3


def _columns(cell: int, start: int, stop: int) -> dict:
    """Synthetic rows of replications [start, stop) of ``cell``, in the row format."""
    n = (stop - start) * ROWS_PER_REP
    out = {}
    for name, kind in ROW_COLUMNS.items():
        if kind == "str":
            out[name] = np.array([f"{name}{i % ROWS_PER_REP}" for i in range(n)], dtype=object)
        elif kind == "float64":
            out[name] = np.linspace(0.0, 1.0, n)
        else:
            out[name] = np.zeros(n, kind)
    out["cell"] = np.full(n, cell, np.int32)
    out["rep"] = np.repeat(np.arange(start, stop, dtype=np.int64), ROWS_PER_REP)
    return out


def _run_dir(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    (out / store.PARTS_DIR).mkdir(parents=True)
    return out


def test_parts_are_named_listed_and_read_back(tmp_path):
    out = _run_dir(tmp_path)
    assert store.part_name(3, 10, 20) == "cell00003_rep000000010-000000020.parquet"
    for cell, a, b in [(1, 0, 4), (0, 5, 9), (0, 0, 5)]:
        path = store.write_part(out, cell, a, b, _columns(cell, a, b))
        assert path.name == store.part_name(cell, a, b)
    (out / store.PARTS_DIR / ".cell00000_rep000000009-000000012.parquet.tmp-1").write_bytes(b"half")
    assert [(c, a, b) for c, a, b, _ in store.part_files(out)] == [(0, 0, 5), (0, 5, 9), (1, 0, 4)]
    assert store.stored_replications(out) == 13
    rows = store.read_rows(out)
    assert list(rows.columns) == list(ROW_COLUMNS) and len(rows) == 13 * ROWS_PER_REP
    assert rows[rows.cell == 0].rep.tolist() == sorted(rows[rows.cell == 0].rep.tolist())
    assert list(store.read_rows(out, columns=["rep"]).columns) == ["rep"]
    assert list(store.read_rows(tmp_path / "empty").columns) == list(ROW_COLUMNS)
    store.clean_strays(out)
    assert not list((out / store.PARTS_DIR).glob(".*"))


def test_a_part_is_checked_against_its_name(tmp_path):
    out = _run_dir(tmp_path)
    good = store.write_part(out, 0, 0, 4, _columns(0, 0, 4))
    assert store.part_problem(good, 0, 0, 4) is None
    assert "not its name's" in store.part_problem(good, 0, 4, 8)
    assert "not its name's" in store.part_problem(good, 1, 0, 4)
    assert "12 rows for 5 replications" in store.part_problem(good, 0, 0, 5)
    cut = out / store.PARTS_DIR / store.part_name(0, 4, 8)
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert store.part_problem(cut, 0, 4, 8)


def test_repair_moves_damaged_parts_aside_and_drops_repeats(tmp_path):
    out = _run_dir(tmp_path)
    store.write_part(out, 0, 0, 4, _columns(0, 0, 4))
    store.write_part(out, 0, 2, 6, _columns(0, 2, 6))  # repeats 2-4 of the first
    bad = out / store.PARTS_DIR / store.part_name(0, 6, 8)
    bad.write_bytes(b"not parquet")
    notes = store.repair_parts(out)
    assert len(notes) == 2 and "damaged part" in notes[0] and "repeating replications" in notes[1]
    assert [p.name for p in (out / store.DAMAGED_DIR).iterdir()] == [bad.name]
    assert [(a, b) for _, a, b, _ in store.part_files(out)] == [(0, 4)]
    assert store.gaps(store.part_files(out), 0, 8) == [(4, 8)]


def test_gaps_are_the_uncovered_ranges():
    parts = [(0, 0, 3, None), (0, 5, 7, None), (1, 0, 10, None), (0, 9, 20, None)]
    assert store.gaps(parts, 0, 12) == [(3, 5), (7, 9)]
    assert store.gaps(parts, 1, 10) == []
    assert store.gaps(parts, 2, 4) == [(0, 4)]


def test_json_is_written_atomically_without_nan(tmp_path):
    path = tmp_path / "m.json"
    store.write_json_atomic(path, store.nan_to_none({"a": float("nan"), "b": [1.0, float("inf")],
                                                     "c": np.int64(3), "d": np.float64(np.nan)}))
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None], "c": 3, "d": None}
    store.write_text_atomic(tmp_path / "t.csv", "x\n")
    assert (tmp_path / "t.csv").read_text() == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "t.csv"]


def _cells():
    sc = from_dict({"name": "s", "n_sites": 6, "n_per_site": 20, "mediators": {"count": 1}})
    return [GridCell(0, (), sc)]


def test_the_manifest_records_the_run_and_refuses_another(tmp_path):
    cells = _cells()
    identity = store.fingerprint(cells, 5, True, 0.95, store.code_version())
    manifest, notes = store.new_manifest(identity, cells, [0], "s.toml", "text")
    assert notes == [] and manifest["seed"] == 5 and manifest["runs"] == []
    assert manifest["cells"][0]["scenario"]["name"] == "s" and manifest["cells"][0]["cell_key"] == 0
    assert {"numpy", "python"} <= set(manifest["packages"])
    out = tmp_path / "run"
    out.mkdir()
    store.write_manifest(out, manifest)
    back = store.read_manifest(out)
    store.check_same_run(back, identity, out)
    with pytest.raises(RunError, match="a different seed"):
        store.check_same_run(back, {**identity, "seed": 6}, out)
    with pytest.raises(RunError, match="a different code version"):
        store.check_same_run(back, {**identity, "code_version": "0+x"}, out)
    (out / store.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(RunError, match="damaged manifest") as info:
        store.read_manifest(out)
    assert "\n" not in str(info.value)


def test_a_huge_scenario_text_is_kept_as_its_hash():
    cells = _cells()
    identity = store.fingerprint(cells, 0, True, 0.95, "v")
    manifest, notes = store.new_manifest(identity, cells, [0], "big.toml", "x" * (store.BIG_TEXT + 1))
    assert manifest["scenario_text"] is None and len(manifest["scenario_text_sha256"]) == 64
    assert len(notes) == 1


def test_warnings_are_one_note():
    manifest = {"runs": [{}]}
    store.add_warnings(manifest, manifest["runs"][0], 2)
    store.add_warnings(manifest, manifest["runs"][0], 3)
    store.add_warnings(manifest, None, 0)
    assert manifest["numerical_warnings"] == 5 and manifest["runs"][0]["numerical_warnings"] == 5
    assert len(manifest["notes"]) == 1 and manifest["notes"][0].startswith("5 numerical warning(s)")


def test_code_version_and_fresh_directories(tmp_path):
    v = store.code_version()
    assert v == store.code_version() and "+" in v
    out = tmp_path / "d"
    (out / store.PARTS_DIR).mkdir(parents=True)
    (out / ".lock").write_text("")
    assert store.is_fresh(out)
    (out / "other").write_text("")
    assert not store.is_fresh(out)


def test_a_run_that_cannot_fit_on_the_disk_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(store.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(RunError, match="take at least"):
        store.check_disk(_cells(), 1000, tmp_path / "new" / "dir")
    store.check_disk(_cells(), 1, tmp_path)


def test_the_store_imports_neither_the_runner_nor_the_summary():
    code = ("import sys, simulate.store; "
            "bad = [m for m in ('simulate.runner', 'simulate.run_summary', 'simulate.accumulator') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
