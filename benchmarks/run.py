"""Benchmarks of issue 7: the pipeline against the floor, against linearmodels, across workers, in memory, at scale.

Usage::

    python3 benchmarks/run.py [--quick] [--out benchmarks/results]

Prints five sections and the targets, and writes under ``--out``: ``results.json`` (every
number, the samples behind each median and the machine), ``ratios.csv`` (one row per ratio
with its numerator, denominator and target), ``scaling.csv``, ``memory.csv``,
``scaling.png`` (log-log cost against sites, persons and mediators) and ``output.txt``
(what was printed).  ``--quick`` runs every section with tiny sizes (for the smoke test);
its numbers say nothing about the targets.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import measure  # noqa: E402

SECTIONS = (
    "Machine",
    "1. Floor ratio",
    "2. linearmodels ratio",
    "3. Workers",
    "4. Peak memory",
    "5. Scaling",
    "6. CLI marginal cost",
    "7. Main job",
    "Targets (issues 7 and 17)",
)
"""Section headings, printed as ``== heading ==`` in this order."""

JSON_KEYS = ("mode", "started", "finished", "total_seconds", "section_seconds", "machine", "floor", "linearmodels",
             "workers", "memory", "scaling", "cli", "main_job", "targets")
"""The top-level keys of ``results.json``."""

# the targets of issues 7 and 17: (key, description, comparison, goal)
TARGETS = (
    ("floor", "pipeline / numpy floor", "<=", 0.5),
    ("cli_vs_pipeline", "CLI marginal / in-process pipeline", "<=", 1.2),
    ("cli_vs_floor", "CLI marginal / numpy floor", "<=", 0.7),
    ("main_cold_to_warm", "main job cold / warm", "<=", 1.5),
    ("main_warm_seconds", "main job warm wall seconds", "<=", 20.0),
    ("linearmodels", "linearmodels loop / pipeline", ">=", 200.0),
    ("workers", "speed-up 1 -> 2 workers", ">=", 1.6),
    ("memory", "peak memory largest / smallest run", "<=", 1.2),
)

SIZES = {
    "full": {
        "floor": {"batch": 200, "warmup": 20, "repeats": 9},
        "linearmodels": {"reps": 7, "batch": 100, "warmup": True},
        "workers": {"target_seconds": 20.0, "min_reps": 1000, "max_reps": 50000, "warmup_reps": 100},
        "memory": [1_000, 10_000, 100_000],
        "scaling": {"target_seconds": 0.5, "min_batch": 5, "max_batch": 500, "repeats": 3},
        "cli": {"short": 100, "long": 1100, "repeats": 3},
        "main_job": {"design": "flagship", "extra": [], "cold": True},
    },
    "quick": {
        "floor": {"batch": 5, "warmup": 2, "repeats": 3},
        "linearmodels": {"reps": 1, "batch": 3, "warmup": False},
        "workers": {"target_seconds": 0.0, "min_reps": 40, "max_reps": 40, "warmup_reps": 20},
        "memory": [100, 300, 1_000],
        "scaling": {"target_seconds": 0.0, "min_batch": 1, "max_batch": 1, "repeats": 1},
        "cli": {"short": 2, "long": 6, "repeats": 1},
        "main_job": {"design": str(HERE / "quick_design.toml"), "extra": [], "cold": False},
    },
}


class Report:
    """Prints lines as they come and keeps them for ``output.txt``."""

    def __init__(self):
        self.lines: list[str] = []
        self.seconds: dict[str, float] = {}
        self._open: tuple[str, float] | None = None

    def __call__(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)

    def section(self, title: str | None) -> None:
        """Close the open section (printing how long it took) and open ``title``."""
        if self._open is not None:
            name, t0 = self._open
            self.seconds[name] = time.perf_counter() - t0
            if self.seconds[name] >= 0.05:
                self(f"  [section: {self.seconds[name]:.1f} s]")
        self._open = None
        if title is not None:
            self("")
            self(f"== {title} ==")
            self._open = (title, time.perf_counter())


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _met(value: float, op: str, goal: float) -> bool:
    return value <= goal if op == "<=" else value >= goal


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, well under a minute (smoke test)")
    ap.add_argument("--out", default=str(HERE / "results"), help="output folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    size = SIZES[mode]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say = Report()
    t_start = time.perf_counter()
    result: dict = {"mode": mode, "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}

    # ------------------------------------------------------------------ machine
    mach = measure.machine()
    result["machine"] = mach
    say(f"simulate benchmarks ({mode} mode){'  -- tiny sizes: not comparable to the targets' if args.quick else ''}")
    say.section(SECTIONS[0])
    say(f"cpu: {mach['cpu']}; cores: {mach['logical_cores']} logical, {mach['usable_cores']} usable; "
        f"memory: {mib(mach['memory_bytes']) if mach['memory_bytes'] else '?'}")
    say(f"platform: {mach['platform']}; Python {mach['python']} ({mach['implementation']})")
    say("packages: " + ", ".join(f"{k} {v}" for k, v in mach["packages"].items() if v))
    say(f"simulate code version: {mach['simulate_code_version']}; git {mach['git_commit'] or '?'}"
        f"{' (uncommitted changes)' if mach['git_dirty'] else ''}")
    if mach["load_average_start"]:
        say("load average at start: " + " ".join(f"{x:.2f}" for x in mach["load_average_start"]))

    raw = measure.load_raw()
    ref = measure.variant(raw)

    # ------------------------------------------------------------------ 1. floor
    say.section(SECTIONS[1])
    fl = measure.floor(ref, **size["floor"])
    result["floor"] = fl
    P = fl["n_mediators"]
    say(f"scenario: {measure.REFERENCE.name}: {fl['n_sites']} sites x {fl['n_per_site']} persons, {P} continuous "
        f"mediators, binary treatment; {fl['rows_per_replication']} rows per replication "
        f"({len(fl['estimators'])} estimators: {', '.join(fl['estimators'])})")
    say(f"normals per replication: persons x (3P+1) + persons + sites x (3P+2) = "
        f"{fl['persons']} x {3 * P + 1} + {fl['persons']} + {fl['n_sites']} x {3 * P + 2} = "
        f"{fl['normals_per_replication']:,}")
    say(f"pipeline: run_replications on batches of {fl['batch']} after a warm-up batch of "
        f"{fl['warmup_replications']} ({fl['warmup_seconds']:.2f} s, compilation included); "
        f"median of {fl['repeats']} batches, interleaved with the floor")
    say(f"  pipeline time per replication:         {ms(fl['pipeline_seconds_per_replication'])}")
    say(f"  numpy default_rng().standard_normal({fl['normals_per_replication']}, out=buffer): "
        f"{ms(fl['numpy_seconds_per_draw'])}")
    say(f"  floor ratio = {ms(fl['pipeline_seconds_per_replication'])} / {ms(fl['numpy_seconds_per_draw'])} "
        f"= {fl['ratio']:.2f}")
    n = fl["normals_per_replication"]
    k_in = fl["kernel_seconds_per_replication"]
    say(f"  (context: inside the fused kernel alone {ms(k_in)} per replication; Python around it "
        f"{ms(fl['pipeline_seconds_per_replication'] - k_in)}, "
        f"{100 * (1 - k_in / fl['pipeline_seconds_per_replication']):.1f}% of the pipeline)")
    say(f"  (context: the kernels' own generator, rng_nb.fill_normal of {n}: "
        f"{ms(fl['kernel_normals_seconds_per_draw'])} = {1e9 * fl['kernel_normals_seconds_per_draw'] / n:.2f} ns "
        f"per normal, numpy {1e9 * fl['numpy_seconds_per_draw'] / n:.2f} ns)")

    # ------------------------------------------------------------------ 2. linearmodels
    say.section(SECTIONS[2])
    lm = measure.linearmodels_loop(ref, **size["linearmodels"])
    result["linearmodels"] = lm
    say(f"linearmodels: simulate.draw + site dummies (exogenous) + site-by-treatment dummies (instruments) + "
        f"IV2SLS and IVLIML (cov_type='robust'), {lm['replications']} replications"
        f"{' after one warm-up' if lm['warmup'] else ''}")
    say(f"pipeline: batches of {lm['pipeline_batch']}, one after each linearmodels replication")
    say(f"  linearmodels time per replication: {ms(lm['linearmodels_seconds_per_replication'])}")
    say(f"  pipeline time per replication:     {ms(lm['pipeline_seconds_per_replication'])}")
    say(f"  linearmodels ratio = {ms(lm['linearmodels_seconds_per_replication'])} / "
        f"{ms(lm['pipeline_seconds_per_replication'])} = {lm['ratio']:.0f}x")
    say(f"  estimates (2sls, liml; every mediator) equal to rtol {lm['rtol']:g}: "
        f"{'yes' if lm['estimates_equal'] else 'NO'} (max relative difference: simulate.estimate "
        f"{lm['max_rel_diff_estimate']:.1e}, pipeline rows {lm['max_rel_diff_pipeline_rows']:.1e}; "
        f"robust SEs {lm['max_rel_diff_se_robust']:.1e})")

    # ------------------------------------------------------------------ 3. workers
    say.section(SECTIONS[3])
    w = size["workers"]
    per_rep = fl["pipeline_seconds_per_replication"]
    reps = int(min(w["max_reps"], max(w["min_reps"], 100 * math.ceil(w["target_seconds"] / per_rep / 100))))
    wk = measure.workers(measure.REFERENCE, reps=reps, warmup_reps=w["warmup_reps"])
    result["workers"] = wk
    say(f"simulate.runner.run on {measure.REFERENCE.name}, {reps} replications per run, quiet, truth_sites=20000; "
        f"time = the manifest's wall_seconds (replications computed and their Parquet parts written; truth and "
        f"summary excluded); each configuration after a warm-up run of {wk['warmup_replications']}")
    for r in wk["runs"].values():
        extra = (f"; cluster start-up {r['cluster_startup_seconds']:.1f} s, not included"
                 if "cluster_startup_seconds" in r else "")
        say(f"  {r['backend']:>5} jobs={r['jobs']}: {r['replications']} reps in {r['wall_seconds']:.2f} s = "
            f"{r['replications_per_second']:.1f} reps/s (chunk {r['chunk']}, worker seconds "
            f"{r['worker_seconds']:.2f}{extra})")
    j = wk["jobs"]
    say(f"  speed-up 1 -> {j} workers = {wk['runs'][f'loky_{j}']['replications_per_second']:.1f} / "
        f"{wk['runs']['loky_1']['replications_per_second']:.1f} = {wk['speedup']:.2f}x")
    say(f"  dask / loky ({j} workers) = {wk['runs'][f'dask_{j}']['replications_per_second']:.1f} / "
        f"{wk['runs'][f'loky_{j}']['replications_per_second']:.1f} = {wk['dask_vs_loky']:.2f}")

    # ------------------------------------------------------------------ 4. memory
    say.section(SECTIONS[4])
    mem = measure.memory(measure.MEMORY_SCENARIO, size["memory"])
    result["memory"] = mem
    say(f"`simulate run {measure.MEMORY_SCENARIO.name} --reps N --jobs 1 --quiet` in a child process (10 sites x 20 "
        f"persons, 1 mediator; the whole run: replications, Parquet parts, truth, summary); peak = the child's max "
        f"RSS by {mem['measured_by']} (VmHWM alongside)")
    say(f"  baseline (`simulate list`, the package imported): {mib(mem['baseline_rss_bytes'])}")
    for r in mem["runs"]:
        say(f"  {r['replications']:>7,} replications: peak {mib(r['peak_rss_bytes'])} "
            f"(VmHWM {mib(r['vmhwm_bytes'])}), ratio to "
            f"{mem['runs'][0]['replications']:,}: {r['ratio_to_smallest']:.3f}, "
            f"{(r['peak_rss_bytes'] - mem['runs'][0]['peak_rss_bytes']) / 2**20:+.1f} MiB "
            f"(whole run {r['wall_seconds']:.1f} s, "
            f"replications {r['replication_seconds']:.1f} s)")
    say(f"  peak memory ratio {mem['runs'][-1]['replications']:,} / {mem['runs'][0]['replications']:,} = "
        f"{mib(mem['runs'][-1]['peak_rss_bytes'])} / {mib(mem['runs'][0]['peak_rss_bytes'])} = "
        f"{mem['ratio_largest_to_smallest']:.3f}")

    # ------------------------------------------------------------------ 5. scaling
    say.section(SECTIONS[5])
    sc_res = measure.scaling(raw, **size["scaling"])
    result["scaling"] = sc_res
    refs = sc_res["reference"]
    say(f"cost per replication (run_replications, median of {sc_res['repeats']} batches), one size varied at a "
        f"time from the reference ({refs['n_sites']} sites, {refs['n_per_site']} per site, "
        f"{refs['n_mediators']} mediators); floor = numpy normals of one replication")
    say(f"  {'series':<10} {'sites':>6} {'per site':>8} {'P':>2} {'persons':>8} {'normals':>9} {'batch':>6} "
        f"{'ms/rep':>9} {'floor ms':>9} {'ratio':>6}")
    for r in sc_res["rows"]:
        say(f"  {r['series']:<10} {r['n_sites']:>6} {r['n_per_site']:>8} {r['n_mediators']:>2} {r['persons']:>8} "
            f"{r['normals_per_replication']:>9} {r['batch']:>6} {r['seconds_per_replication'] * 1e3:>9.3f} "
            f"{r['numpy_floor_seconds'] * 1e3:>9.3f} {r['floor_ratio']:>6.2f}")
    say("  log-log slopes: " + ", ".join(f"{k} {v:.2f}" for k, v in sc_res["slopes"].items())
        + "  (linear in persons is the goal: slope ~1)")
    figure = out / "scaling.png"
    _plot_scaling(sc_res, figure)
    say(f"  figure: {figure}")

    # ------------------------------------------------------------------ 6. CLI marginal cost
    say.section(SECTIONS[6])
    cl = measure.cli_marginal(measure.REFERENCE, **size["cli"])
    result["cli"] = cl
    floor_s, pipe_s = fl["numpy_seconds_per_draw"], fl["pipeline_seconds_per_replication"]
    cl["vs_pipeline"] = cl["seconds_per_replication"] / pipe_s
    cl["vs_floor"] = cl["seconds_per_replication"] / floor_s
    say(f"`simulate run {measure.REFERENCE.name} --jobs 1 --quiet --truth-sites {cl['truth_sites']}` in a child "
        f"process pinned to cpu {cl['cpu']}, {cl['short']} and {cl['long']} replications, {cl['repeats']} runs "
        f"each, interleaved (the whole command: start-up, replications, Parquet parts, truth, summary)")
    say(f"  median wall: {cl['short']} reps {cl['short_seconds']:.2f} s, {cl['long']} reps {cl['long_seconds']:.2f} s"
        f"; start-up + truth {cl['startup_seconds']:.2f} s")
    say(f"  CLI marginal cost per replication = ({cl['long_seconds']:.2f} - {cl['short_seconds']:.2f}) s / "
        f"{cl['long'] - cl['short']} = {ms(cl['seconds_per_replication'])}")
    say(f"  CLI marginal / in-process pipeline = {ms(cl['seconds_per_replication'])} / {ms(pipe_s)} = "
        f"{cl['vs_pipeline']:.2f}")
    say(f"  CLI marginal / numpy floor = {ms(cl['seconds_per_replication'])} / {ms(floor_s)} = {cl['vs_floor']:.2f}")

    # ------------------------------------------------------------------ 7. main job
    say.section(SECTIONS[7])
    mj = measure.main_job(**size["main_job"])
    result["main_job"] = mj
    shown = mj["design"] if not args.quick else "a tiny design (quick mode)"
    say(f"`simulate stress-test {shown} --jobs {mj['jobs']} --quiet` (the README's main job), the whole command, "
        + ("first with an empty NUMBA_CACHE_DIR (cold: every kernel compiled), then again with it filled (warm)"
           if mj["cold_cache_emptied"] else "twice with the usual cache (quick mode: 'cold' is not cold)"))
    say(f"  cold {mj['cold_seconds']:.1f} s, warm {mj['warm_seconds']:.1f} s, cold / warm = {mj['cold_to_warm']:.2f}")

    # ------------------------------------------------------------------ targets
    say.section(SECTIONS[8])
    values = {"floor": fl["ratio"], "linearmodels": lm["ratio"], "workers": wk["speedup"],
              "memory": mem["ratio_largest_to_smallest"], "cli_vs_pipeline": cl["vs_pipeline"],
              "cli_vs_floor": cl["vs_floor"], "main_cold_to_warm": mj["cold_to_warm"],
              "main_warm_seconds": mj["warm_seconds"]}
    targets = {}
    for key, label, op, goal in TARGETS:
        met = _met(values[key], op, goal)
        targets[key] = {"description": label, "value": values[key], "goal": f"{op} {goal:g}", "met": met}
        say(f"  {label:<38} {values[key]:>9.3f}  goal {op} {goal:g}: {'met' if met else 'NOT met'}")
    if args.quick:
        say("  (quick mode: tiny sizes; these verdicts do not judge the targets; run without --quick)")
    say("  also: linearmodels estimates equal: " + ("yes" if lm["estimates_equal"] else "NO"))
    result["targets"] = targets

    # ------------------------------------------------------------------ files
    say.section(None)
    result["section_seconds"] = say.seconds
    result["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result["total_seconds"] = time.perf_counter() - t_start
    say("")
    say(f"total {result['total_seconds']:.0f} s; written to {out}/: results.json, ratios.csv, scaling.csv, "
        f"memory.csv, scaling.png, output.txt")
    _write(out, result, say.lines)
    return 0


def _write(out: Path, result: dict, lines: list[str]) -> None:
    assert set(result) == set(JSON_KEYS), sorted(set(result) ^ set(JSON_KEYS))
    (out / "results.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    fl, lm, wk, mem = result["floor"], result["linearmodels"], result["workers"], result["memory"]
    j = wk["jobs"]
    ratio_rows = [
        ("floor", "pipeline s/rep", fl["pipeline_seconds_per_replication"], "numpy normals s/rep",
         fl["numpy_seconds_per_draw"], fl["ratio"]),
        ("linearmodels", "linearmodels s/rep", lm["linearmodels_seconds_per_replication"], "pipeline s/rep",
         lm["pipeline_seconds_per_replication"], lm["ratio"]),
        ("workers", f"loky jobs={j} reps/s", wk["runs"][f"loky_{j}"]["replications_per_second"],
         "loky jobs=1 reps/s", wk["runs"]["loky_1"]["replications_per_second"], wk["speedup"]),
        ("dask_vs_loky", f"dask jobs={j} reps/s", wk["runs"][f"dask_{j}"]["replications_per_second"],
         f"loky jobs={j} reps/s", wk["runs"][f"loky_{j}"]["replications_per_second"], wk["dask_vs_loky"]),
        ("memory", f"peak RSS bytes ({mem['runs'][-1]['replications']} reps)", mem["runs"][-1]["peak_rss_bytes"],
         f"peak RSS bytes ({mem['runs'][0]['replications']} reps)", mem["runs"][0]["peak_rss_bytes"],
         mem["ratio_largest_to_smallest"]),
        ("cli_vs_pipeline", "CLI marginal s/rep", result["cli"]["seconds_per_replication"], "pipeline s/rep",
         fl["pipeline_seconds_per_replication"], result["cli"]["vs_pipeline"]),
        ("cli_vs_floor", "CLI marginal s/rep", result["cli"]["seconds_per_replication"], "numpy normals s/rep",
         fl["numpy_seconds_per_draw"], result["cli"]["vs_floor"]),
        ("main_cold_to_warm", "main job cold s", result["main_job"]["cold_seconds"], "main job warm s",
         result["main_job"]["warm_seconds"], result["main_job"]["cold_to_warm"]),
        ("main_warm_seconds", "main job warm s", result["main_job"]["warm_seconds"], "1 s", 1.0,
         result["main_job"]["warm_seconds"]),
    ]
    with open(out / "ratios.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["ratio", "numerator", "numerator_value", "denominator", "denominator_value", "value", "goal",
                     "met", "mode"])
        for name, num, nv, den, dv, v in ratio_rows:
            t = result["targets"].get(name)
            wr.writerow([name, num, repr(nv), den, repr(dv), repr(v), t["goal"] if t else "", t["met"] if t else "",
                         result["mode"]])
    _csv(out / "scaling.csv", result["scaling"]["rows"])
    _csv(out / "memory.csv", mem["runs"])
    (out / "output.txt").write_text("\n".join(lines) + "\n")


def _csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)


def _json_default(x):
    import numpy as np

    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _plot_scaling(res: dict, path: Path) -> None:
    """Cost per replication against each size, relative to the reference value, on log-log axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    styles = {"sites": ("#0072B2", "o", "-"), "persons": ("#D55E00", "s", "--"), "mediators": ("#009E73", "^", ":")}
    labels = {"sites": "sites", "persons": "persons per site", "mediators": "mediators"}
    ref = res["reference"]
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=150)
    for name, (color, marker, ls) in styles.items():
        rows = [r for r in res["rows"] if r["series"] == name]
        x = np.array([r["value"] for r in rows], float) / ref[rows[0]["varied"]]
        y = np.array([r["seconds_per_replication"] for r in rows]) * 1e3
        ax.plot(x, y, color=color, marker=marker, ls=ls,
                label=f"{labels[name]} (ref {ref[rows[0]['varied']]}; slope {res['slopes'][name]:.2f})")
    ref_cost = np.median([r["seconds_per_replication"] for r in res["rows"]
                          if r["n_sites"] == ref["n_sites"] and r["n_per_site"] == ref["n_per_site"]
                          and r["n_mediators"] == ref["n_mediators"]]) * 1e3
    rel = [r["value"] / ref[r["varied"]] for r in res["rows"]]
    xs = np.array([min(rel), max(rel)])
    ax.plot(xs, ref_cost * xs, color="0.6", lw=0.8, ls="-.", label="slope 1 through the reference")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(FixedLocator([0.2, 0.25, 0.5, 1, 2, 4]))
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("size / reference size")
    ax.set_ylabel("time per replication (ms)")
    ax.set_title("Cost per replication, one size varied at a time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
