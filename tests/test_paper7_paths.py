"""Paths and binary mediators (issue 14, item 2): a path may start at a binary mediator, not end at one.

The refusal is kept (notes/readme-paper7.md says why: a binary mediator's take-up follows fixed
compliance types, not one index that an upstream change could shift); its message names the field,
the mediator and the reason on one line.
"""

from __future__ import annotations

import pytest

import simulate as sm
from simulate.scenario import ScenarioError

TEXT = """
n_sites = 20
[treatment]
arms = 2
[mediators]
names = ["a", "b"]
kind = {kinds}
[[paths]]
from = 1
to = 2
mean = 0.3
"""


def test_a_path_into_a_binary_mediator_is_refused_on_one_line_with_the_reason():
    with pytest.raises(ScenarioError) as err:
        sm.loads(TEXT.format(kinds='["continuous", "binary"]'))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("<string>: paths[1].to: a path cannot end at a binary mediator (mediator 2)")
    assert "compliance types" in message and "start a path at the binary one" in message


def test_a_path_from_a_binary_mediator_is_accepted_and_has_a_truth():
    sc = sm.loads(TEXT.format(kinds='["binary", "continuous"]'))
    tr = sm.truth(sc)
    # T_a = Delta_a + B Delta_b with a constant B = 0.3: the total effect is ate_a + 0.3 ate_b
    assert tr.total_effect[0] == pytest.approx(tr.ate[0] + 0.3 * tr.ate[1], abs=1e-12)
