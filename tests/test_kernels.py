"""The kernels package: cache housekeeping only when asked, compile once visibly, stage modules re-exported."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import simulate.kernels as kernels
from simulate.kernels import codes_nb, fit_nb, jive_nb, kclass_nb, linalg_nb, moments_nb, sitelevel_nb
from simulate.kernels import estimators_nb as nb

# every name other modules imported from estimators_nb before it was split by stage
OLD_NAMES = """
STATUS_OK STATUS_SINGULAR STATUS_EMPTY_CELL STATUS_TOO_FEW_SITES STATUS_NOT_APPLICABLE STATUS_SINGLETON_CELL
STATUS_NUMERICAL E_OLS E_TSLS E_LIML E_FULLER E_UJIVE E_BTSLS E_BETWEEN_OLS E_BETWEEN_PRECISION
E_BETWEEN_INTERCEPT E_WALD N_ESTIMATORS SE_CONVENTIONAL SE_HC0 SE_HC1 SE_CLUSTER SE_MANY_INSTRUMENT
SE_HETEROGENEITY N_SE D_N D_SITES D_ARMS D_LIML_KAPPA D_FULLER_KAPPA D_SIGMA_MIN D_SIGMA_RATIO D_SARGAN
D_SARGAN_DF D_CRAGG_DONALD D_NONLINEAR D_NONLINEAR_DF D_DIRECT D_DIRECT_SE_CONVENTIONAL D_DIRECT_SE_HC0
D_DIRECT_SE_HC1 D_FIRST_STAGE_DF1 D_FIRST_STAGE_DF2 D_NONLINEAR_STATUS N_DIAGNOSTICS
site_cell_statistics cell_statistics site_moments cell_deviations between_within liml_kappa kclass_fit
bekker_se kcfgi_se ujive_fit person_meats site_contrasts precision_weights fit_from_statistics fit_persons
fit_with_statistics anderson_rubin
_REL_TOL _sum4 _dot4 _cell_moments _between_within _sym_inverse _scalar_inverse _sandwich_se _quad
_coef_vector _kclass_fit _ujive_fit _PERSON_BLOCK _cr3_cov _site_gls _put_site_fit _fit_from_statistics _wald
""".split()

STAGES = (codes_nb, fit_nb, jive_nb, kclass_nb, linalg_nb, moments_nb, sitelevel_nb)


def test_estimators_nb_re_exports_every_old_name_from_its_stage_module():
    missing = [n for n in OLD_NAMES if not hasattr(nb, n)]
    assert not missing
    for name in OLD_NAMES:
        obj = getattr(nb, name)
        if callable(obj):  # the same kernel object, not a copy compiled twice
            assert any(obj is vars(m).get(k) for m in STAGES for k in vars(m)), name
    assert set(nb.__all__) <= set(vars(nb))


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
        subprocess.run([sys.executable, "-c", "import simulate.kernels, simulate.kernels.estimators_nb"],
                       check=True, env=env, timeout=300)
        assert (stale / "f.nbi").exists()
    finally:
        shutil.rmtree(stale, ignore_errors=True)


def test_kernels_are_cached_after_warm_up_and_a_second_warm_up_compiles_nothing():
    from simulate import warmup

    warmup.warm_up()  # compiles on a cold cache (about a minute), else loads
    assert warmup.kernels_cached()
    assert warmup.warm_up() is None  # already in memory: nothing compiled
