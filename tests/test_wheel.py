"""The package works as installed: built into a wheel, installed into a fresh virtual environment.

The wheel is built from the checkout by setuptools' PEP 517 backend; a new virtual
environment (``venv``, without pip) gets it the way an installer puts a pure-Python wheel in
place: its files unpacked into the environment's site-packages and its console script written
from ``entry_points.txt`` (no pip, no download, nothing written outside the temporary folder:
the wheel is built from a copy of the sources there), so
``simulate`` is the installed one; the
dependencies (numpy, numba, ...) are reached through a ``.pth`` file naming this
interpreter's site-packages folders, whose own ``.pth`` files (an editable install of the
checkout among them) are not processed there.  The commands run from a folder outside the
checkout.  The default test runs ``list``, ``show baseline``, ``validate flagship`` and a
short ``run`` with the kernels interpreted (``NUMBA_DISABLE_JIT=1``: compiling them cold
would take minutes); the slow one compiles them and analyses the bundled AK80 extract.
"""

import os
import shutil
import site as pysite
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (in the test extra)")
    pytest.importorskip("wheel", reason="building the wheel needs wheel (in the test extra)")
    d = tmp_path_factory.mktemp("wheel")
    # the PEP 517 backend itself (setuptools.build_meta): builds the wheel, installs nothing; from a copy of
    # the sources, so that its build/ and egg-info folders are written in the temporary folder, not the checkout
    src = d / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "results", "build", "dist", "*.egg-info",
                                                              "__pycache__", ".pytest_cache", ".hypothesis"))
    build = f"from setuptools import build_meta; build_meta.build_wheel({str(d / 'dist')!r})"
    (d / "dist").mkdir()
    res = subprocess.run([sys.executable, "-c", build], cwd=src, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next((d / "dist").glob("simulate-*.whl"))
    venv = d / "venv"
    res = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True,
                         timeout=300)
    if res.returncode != 0:
        pytest.skip(f"cannot create a virtual environment ({res.stderr.strip()[-200:]}): install python3-venv")
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # this interpreter's own site-packages and, in a virtual environment made with --system-site-packages,
    # the base interpreter's too (site.getsitepackages lists both)
    deps = sysconfig.get_paths()
    folders = [deps["purelib"], deps["platlib"], *pysite.getsitepackages()]
    (site / "dependencies.pth").write_text("\n".join(dict.fromkeys(folders)) + "\n")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
        info = next(n.split("/")[0] for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
    target = next(line.split("=", 1)[1].strip() for line in (site / info / "entry_points.txt").read_text().splitlines()
                  if line.startswith("simulate ="))
    module, func = target.split(":")
    script = Path(_bin((wheel, site, d, venv), "simulate"))
    script.write_text(f"#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
    script.chmod(0o755)
    work = d / "work"
    work.mkdir()
    return wheel, site, work, venv


def _bin(installed, name: str) -> str:
    venv = installed[3]
    return str(venv / ("Scripts" if os.name == "nt" else "bin") / name)


def _simulate(installed, *argv, env=None, timeout=600):
    """The installed console script ``simulate ARGV``, run from outside the checkout."""
    _, _, work, _ = installed
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    e = {**e, "NUMBA_CACHE_DIR": str(work / "numba"), **(env or {})}
    return subprocess.run([_bin(installed, "simulate"), *argv], cwd=work, env=e, capture_output=True, text=True,
                          timeout=timeout)


def test_the_wheel_holds_the_scenarios_the_data_and_the_templates(installed):
    wheel = installed[0]
    names = zipfile.ZipFile(wheel).namelist()
    bundled = sorted(p.name for p in (ROOT / "simulate" / "scenarios").glob("*.toml"))
    for n in bundled:
        assert f"simulate/scenarios/{n}" in names
    assert "simulate/scenarios/designs/flagship.toml" in names
    assert "simulate/data/ak80.csv.gz" in names
    assert "simulate/templates/stress_report.html.j2" in names


def test_commands_run_from_the_installed_package(installed, tmp_path):
    site = installed[1]
    probe = subprocess.run([_bin(installed, "python"), "-c", "import simulate; print(simulate.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and probe.stdout.strip().startswith(str(site)), probe.stdout + probe.stderr
    res = _simulate(installed, "list")
    assert res.returncode == 0, res.stderr
    bundled = sorted(p.stem for p in (ROOT / "simulate" / "scenarios").glob("*.toml"))
    for name in bundled:
        assert name in res.stdout
    res = _simulate(installed, "show", "baseline", "--sites", "2000")
    assert res.returncode == 0 and "ate" in res.stdout.lower(), res.stderr
    res = _simulate(installed, "validate", "flagship")
    assert res.returncode == 0 and res.stdout.startswith("ok (a stress-test design"), res.stderr
    scen = tmp_path / "tiny.toml"
    scen.write_text("n_sites = 4\nn_per_site = 20\n[site]\ncompliance_mean = 1.0\ncompliance_sd = 0.5\n")
    res = _simulate(installed, "run", str(scen), "--reps", "2", "--out", str(tmp_path / "run"), "--quiet",
                    "--truth-sites", "2000", env={"NUMBA_DISABLE_JIT": "1"})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "run" / "summary.csv").is_file()


@pytest.mark.slow
def test_the_ak80_analysis_runs_from_the_installed_package(installed):
    code = ("import sys; from simulate.datasets import ak80_path; from simulate.cli import main; "
            "sys.exit(main(['analyze', str(ak80_path()), '--site', 'yob', '--treatment', 'qob', "
            "'--mediator', 'education', '--outcome', 'lwage']))")
    work = installed[2]
    res = subprocess.run([_bin(installed, "python"), "-c", code], cwd=work, env={**os.environ,
                         "NUMBA_CACHE_DIR": str(work / "numba")}, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "0.0891" in res.stdout  # 2SLS on AK80 (Stata and ManyIV: 0.0891155)


def test_the_wheel_metadata_version_extras_and_entry_point(installed):
    import tomllib

    wheel, _, work, _ = installed
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(f"{info}/METADATA").decode()
        entry_points = z.read(f"{info}/entry_points.txt").decode()
    for module in ("cli/__init__.py", "cli/app.py", "cli/handler.py", "scenario/__init__.py", "scenario/model.py",
                   "__main__.py"):
        assert f"simulate/{module}" in names, module
    assert "simulate = simulate.cli.app:main" in entry_points
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    dask = [line for line in requires if line.startswith("Requires-Dist: dask")]
    assert dask and all('extra == "dask"' in line for line in dask), dask  # an extra, not a dependency
    assert any(line.startswith("Requires-Dist: tomlkit") for line in requires)
    assert any(line.startswith("Requires-Dist: jupytext") and 'extra == "notebooks"' in line for line in requires)
    assert any(line.startswith("Requires-Dist: simulate[dask]") and 'extra == "test"' in line for line in requires)
    # __version__ and --version come from the installed metadata
    res = _simulate(installed, "--version")
    assert res.returncode == 0 and res.stdout.strip() == f"simulate {project['version']}", res.stdout + res.stderr
    res = subprocess.run([_bin(installed, "python"), "-m", "simulate", "list"], cwd=work, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0 and "baseline" in res.stdout, res.stderr
