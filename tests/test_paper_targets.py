"""``simulate.truth.targets`` gives every target, and ``simulate truth`` shows them (issue 14)."""

from __future__ import annotations

import json
import math

from simulate.cli import main
from simulate.cli._common import resolve
from simulate.scenario import load
from simulate.truth import late_site_mean, targets, truth


def load_bundled(name):
    return load(resolve(name))


def test_targets_carry_late_site_mean_and_total_effect():
    sc = load_bundled("mto")
    tr = truth(sc)
    expected = late_site_mean(sc)
    got = targets(tr, sc)
    for (_est, mediator), tg in got.items():
        if mediator == "direct_effect":
            assert math.isnan(tg["late_site_mean"])
            continue
        p = sc.mediator_names.index(mediator)
        if sc.is_binary[p]:
            assert tg["late_site_mean"] == expected[p]
        else:
            assert math.isnan(tg["late_site_mean"])
        assert "total_effect" in tg


def test_cli_truth_shows_every_target(capsys):
    assert main(["truth", "mto"]) == 0
    table = capsys.readouterr().out
    assert "LATE site mean" in table and "total effect" in table
    assert main(["truth", "mto", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["mediators"]
    sc = load_bundled("mto")
    for p, row in enumerate(rows):
        assert "total_effect" in row
        want = late_site_mean(sc)[p]
        assert (row["late_site_mean"] is None) if math.isnan(want) else math.isclose(row["late_site_mean"], want)
