"""No facades: every name is imported from the module that defines it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import simulate

ROOT = Path(simulate.__file__).parent


GONE = {"simulate.summary": "summary.py", "simulate.kernels.estimators_nb": "kernels/estimators_nb.py"}


def _package_of(path: Path) -> list[str]:
    try:
        return ["simulate", *path.relative_to(ROOT).parent.parts]
    except ValueError:
        return []


def _imported_modules(path: Path, package: list[str] | None = None) -> set[str]:
    """Every module a file imports, relative imports resolved against its package (default: its place)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _package_of(path) if package is None else package
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def test_the_re_export_modules_are_gone_and_nothing_imports_them():
    # by file, not by import: an editable install of another checkout could still resolve the name
    for rel in GONE.values():
        assert not (ROOT / rel).exists(), rel
    repo = ROOT.parent
    files = [p for d in ("simulate", "tests", "notebooks", "benchmarks") for p in (repo / d).rglob("*.py")]
    users = {str(p.relative_to(repo)): sorted(_imported_modules(p) & set(GONE)) for p in files}
    assert not {k: v for k, v in users.items() if v}


def test_the_import_scan_resolves_relative_imports(tmp_path):
    fake = tmp_path / "x.py"
    fake.write_text("from simulate import summary\nimport simulate.kernels.estimators_nb as nb\n", encoding="utf-8")
    assert set(GONE) <= _imported_modules(fake)
    fake.write_text("from .. import summary\nfrom .estimators_nb import E_OLS\n", encoding="utf-8")
    assert set(GONE) <= _imported_modules(fake, ["simulate", "kernels"])
    assert _package_of(ROOT / "kernels" / "fit_nb.py") == ["simulate", "kernels"]


def test_the_runner_does_not_re_export_the_store():
    from simulate import runner, store

    for name in ("read_rows", "BIG_TEXT", "BIG_DESCRIPTION", "MIN_BYTES_PER_ROW"):
        assert not hasattr(runner, name), name
        assert hasattr(store, name), name
    assert not {"read_rows", "part_files", "code_version", "MAX_REPS"} & set(runner.__all__)


def _private_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from X import _name`` in a file, X outside the file's own package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level >= 2:  # reaches out of the file's package
            out += [(node.module or "", a.name) for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


@pytest.mark.parametrize("package", ["sensitivity", "plots"])
def test_these_packages_import_no_private_name_from_another(package):
    found = {p.name: _private_imports(p) for p in (ROOT / package).glob("*.py")}
    assert not {k: v for k, v in found.items() if v}


def test_the_private_import_check_sees_one(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from ..stress import _cell_measures\nfrom .base import _wrap\n", encoding="utf-8")
    assert _private_imports(probe) == [("stress", "_cell_measures")]
