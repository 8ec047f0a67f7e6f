"""Notebook (f): the stored ``f_sensitivity.ipynb`` is its jupytext source executed, with no error output.

(``tests/test_notebooks.py`` lists the five older notebooks; this file checks the sixth the same way until the
lead adds it there.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

WHAT = "the notebook tests need the 'notebooks' extra: pip install -e '.[notebooks]'"
jupytext = pytest.importorskip("jupytext", reason=f"{WHAT} (jupytext is missing)")
nbformat = pytest.importorskip("nbformat", reason=f"{WHAT} (nbformat is missing)")

SRC = Path(__file__).resolve().parents[1] / "notebooks" / "f_sensitivity.py"
DEFAULT = re.compile(r'REPS = int\(os\.environ\.get\("SIMULATE_NOTEBOOK_REPS", (\d+)\)\)')


def cells(nb):
    return [(c.cell_type, c.source) for c in nb.cells]


def test_source_is_a_percent_notebook_with_one_knob():
    nb = jupytext.read(SRC)
    assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert DEFAULT.search(code[0].source)


def test_stored_ipynb_is_the_source_executed_without_errors():
    ipynb = SRC.with_suffix(".ipynb")
    stored = nbformat.read(ipynb, as_version=4)
    nbformat.validate(stored)
    assert cells(jupytext.read(ipynb)) == cells(jupytext.read(SRC)), "run 'jupytext --to ipynb --execute " \
        "notebooks/f_sensitivity.py' from the repository root"
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in code[0].outputs)
    assert f"{DEFAULT.search(code[0].source).group(1)} replications per simulated cell" in text  # the default
    shown = " ".join(str(o.get("data", {}).get("text/markdown", "")) for c in code for o in c.outputs)
    assert "would move 2SLS (education) by its own 95% interval" in shown  # the AK80 sentences were printed
