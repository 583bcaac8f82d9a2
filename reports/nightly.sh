#!/usr/bin/env bash
# Nightly benchmark run: new commits -> asv results store -> asv publish -> HTML report ->
# regression summary against the previous benchmarked commit. Exit 1 when something regressed,
# 2 on bad input, other non-zero when a step failed.
#
# Usage (from the checkout root, in an environment with the project installed, e.g. `tox -e nightly`):
#   bash reports/nightly.sh                # --python=same: benchmark the current tree (HEAD) in this env
#   NIGHTLY_MODE=envs bash reports/nightly.sh   # asv builds a virtualenv per commit and runs `asv run NEW`
# Environment knobs:
#   RECSYS_MACHINE   machine name in the results store (default: the suite's fingerprint-based name)
#   NIGHTLY_FACTOR   slowdown factor that counts as a regression (default 1.1)
#   NIGHTLY_OUT      report folder (default reports/html); the summary goes to $NIGHTLY_OUT/regressions.md
#   NIGHTLY_BENCH    optional asv --bench regex to run a subset
#   NIGHTLY_ASV_ARGS extra asv run arguments (e.g. "-a repeat=10")
#   NIGHTLY_CONFIRM  1 (default): re-run regressed benchmarks once and report only those that persist
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

PY=${PYTHON:-python}
MODE=${NIGHTLY_MODE:-same}
FACTOR=${NIGHTLY_FACTOR:-1.1}
OUT=${NIGHTLY_OUT:-reports/html}
MACHINE=${RECSYS_MACHINE:-$($PY -c 'from recsys_impls.benchsupport import machine_name; print(machine_name())')}
export RECSYS_MACHINE=$MACHINE
BENCH_ARGS=()
[ -n "${NIGHTLY_BENCH:-}" ] && BENCH_ARGS+=(--bench "$NIGHTLY_BENCH")
# shellcheck disable=SC2206
[ -n "${NIGHTLY_ASV_ARGS:-}" ] && BENCH_ARGS+=($NIGHTLY_ASV_ARGS)

echo "== nightly on machine $MACHINE (mode $MODE)"
$PY -m asv machine --yes --machine "$MACHINE" >/dev/null
$PY -m recsys_impls.measure.peaks --refresh --framework torch,tf || echo "note: peaks refresh failed (roofline scores will measure their own); continuing"

# Raw samples let `reports regressions` use asv's Mann-Whitney test instead of the factor alone.
set +e
if [ "$MODE" = envs ]; then
  $PY -m asv run NEW --machine "$MACHINE" --record-samples --show-stderr "${BENCH_ARGS[@]}"
  status=$?
elif [ "$MODE" = same ]; then
  HEAD=$(git rev-parse HEAD)
  # asv sets ASV_COMMIT only for environments it builds; the suite files its records under it.
  ASV_COMMIT=$HEAD $PY -m asv run --python=same --set-commit-hash "$HEAD" --machine "$MACHINE" \
    --record-samples --show-stderr "${BENCH_ARGS[@]}"
  status=$?
else
  echo "error: NIGHTLY_MODE=$MODE; accepted: same, envs" >&2
  exit 2
fi
set -e
# asv exits non-zero when a single benchmark fails; the others are saved and the failure shows in
# the report and as "now fails" in the regression summary, so carry on.
[ "$status" -ne 0 ] && echo "note: asv run exited $status (some benchmark failed); continuing"

$PY -m asv publish
$PY -m reports build --out "$OUT" --factor "$FACTOR"

mapfile -t COMMITS < <($PY -m reports commits --machine "$MACHINE")
if [ "${#COMMITS[@]}" -lt 2 ]; then
  echo "only ${#COMMITS[@]} commit(s) with results on $MACHINE: no regression check yet"
  exit 0
fi
BASE=${COMMITS[-2]}
HEAD_RESULT=${COMMITS[-1]}
echo "== regressions: $HEAD_RESULT vs $BASE"
set +e
$PY -m reports regressions --base "$BASE" --head "$HEAD_RESULT" --machine "$MACHINE" --factor "$FACTOR" \
  --only-changed --markdown "$OUT/regressions.md" --regressed-list "$OUT/regressed.txt"
status=$?
set -e
# Confirmation pass (the same commit benchmarked twice here flagged 1 of 14 CPU micro-benchmarks, its
# whole sample distribution shifted between runs): re-run only what regressed, on the head, and report
# only regressions that persist. NIGHTLY_CONFIRM=0 turns it off; it needs the head checked out (mode same).
if [ "$status" -eq 1 ] && [ "${NIGHTLY_CONFIRM:-1}" = 1 ] && [ "$MODE" = same ] \
   && [ "$(git rev-parse HEAD | cut -c1-8)" = "${HEAD_RESULT:0:8}" ]; then
  # asv matches a parameterised benchmark as "name(param, ...)": anchor the name, allow the params.
  REGEX=$(sed 's/[.]/\\./g; s/^/^/; s/$/(\\(|$)/' "$OUT/regressed.txt" | paste -sd'|')
  echo "== confirming $(wc -l < "$OUT/regressed.txt") regressed benchmark(s) with a re-run of the head"
  ASV_COMMIT=$(git rev-parse HEAD) $PY -m asv run --python=same --set-commit-hash "$(git rev-parse HEAD)" \
    --machine "$MACHINE" --record-samples --bench "$REGEX" || true
  set +e
  $PY -m reports regressions --base "$BASE" --head "$HEAD_RESULT" --machine "$MACHINE" --factor "$FACTOR" \
    --only-changed --markdown "$OUT/regressions.md"
  status=$?
  set -e
fi
exit "$status"
