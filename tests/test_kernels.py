"""The kernels package: cache housekeeping only when asked, compile once visibly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import simulate.kernels as kernels
from simulate.kernels import codes_nb, fit_nb, jive_nb, kclass_nb, linalg_nb, moments_nb, sitelevel_nb

STAGES = (codes_nb, fit_nb, jive_nb, kclass_nb, linalg_nb, moments_nb, sitelevel_nb)


def test_the_cache_folder_is_keyed_on_every_kernel_source(tmp_path, monkeypatch):
    sources = {p.name for p in Path(kernels.__file__).parent.glob("*_nb.py")}
    assert {m.__name__.rsplit(".", 1)[1] + ".py" for m in STAGES} <= sources
    for name in sources:
        (tmp_path / name).write_bytes((Path(kernels.__file__).parent / name).read_bytes())
    monkeypatch.setattr(kernels, "_HERE", tmp_path)
    first = kernels._cache_dir()
    assert Path(first).name.startswith("numba-") and len(Path(first).name) == len("numba-") + 12
    (tmp_path / "fit_nb.py").write_text((tmp_path / "fit_nb.py").read_text() + "\n# an edit\n")
    assert kernels._cache_dir() != first


def test_prune_cache_removes_only_the_folders_of_other_sources(tmp_path, monkeypatch):
    for d in ("numba-aaaaaaaaaaaa", "numba-bbbbbbbbbbbb", "numba-cccccccccccc", "keep-me"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f.nbi").write_text("x")
    (tmp_path / "numba-notafolder").write_text("x")
    monkeypatch.setattr(kernels, "_CACHE_DIR", str(tmp_path / "numba-aaaaaaaaaaaa"))
    removed = kernels.prune_cache()
    assert sorted(Path(p).name for p in removed) == ["numba-bbbbbbbbbbbb", "numba-cccccccccccc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep-me", "numba-aaaaaaaaaaaa", "numba-notafolder"]
    assert kernels.prune_cache() == []


def test_prune_cache_removes_nothing_when_the_user_chose_the_cache_folder(monkeypatch):
    monkeypatch.setattr(kernels, "_CACHE_DIR", None)
    assert kernels.prune_cache() == []


def test_importing_the_kernels_deletes_no_cache_folder():
    if os.environ.get("NUMBA_CACHE_DIR"):
        pytest.skip("NUMBA_CACHE_DIR is set: the package's own cache folders are not in use")
    root = Path(kernels._CACHE_DIR).parent
    root.mkdir(parents=True, exist_ok=True)
    stale = root / "numba-000000000000"
    stale.mkdir(exist_ok=True)
    (stale / "f.nbi").write_text("x")
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(kernels.__file__).parents[2])] + sys.path)}
        subprocess.run([sys.executable, "-c", "import simulate.kernels, simulate.kernels.fit_nb"],
                       check=True, env=env, timeout=300)
        assert (stale / "f.nbi").exists()
    finally:
        shutil.rmtree(stale, ignore_errors=True)


def test_kernels_are_cached_after_warm_up_and_a_second_warm_up_compiles_nothing():
    from simulate import warmup

    warmup.warm_up()  # compiles on a cold cache (about a minute), else loads
    assert warmup.kernels_cached()
    assert warmup.warm_up() is None  # already in memory: nothing compiled
