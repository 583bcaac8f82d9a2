#!/usr/bin/env bash
# Nightly benchmark run: new commits -> asv results store -> an A/A re-run of the newest commit (the
# gate's false-alarm rate, the canary's recall, the unstable list) -> asv publish -> HTML report ->
# regression summary against the previous benchmarked commit, confirmed by re-measuring base and head
# interleaved. Exit 1 when a regression is confirmed (or the canary was not caught), 2 on bad input,
# other non-zero when a step failed.
#
# Usage (from the checkout root, in an environment with the project installed, e.g. `tox -e nightly`):
#   bash reports/nightly.sh                    # --python=same: benchmark the current tree (HEAD) in this env
#   bash reports/nightly.sh --canary 1.3       # the A/A re-run slows the canary 1.3x: it must be flagged
#   NIGHTLY_MODE=envs bash reports/nightly.sh  # asv builds a virtualenv per commit and runs `asv run NEW`
# Environment knobs:
#   RECSYS_MACHINE   machine name in the results store (default: the suite's fingerprint-based name)
#   NIGHTLY_FACTOR   slowdown factor that counts as a regression (default 1.1)
#   NIGHTLY_OUT      report folder (default reports/html); the summary goes to $NIGHTLY_OUT/regressions.md
#   NIGHTLY_DIR      A/A history and unstable list (default .asv/nightly, beside the results)
#   NIGHTLY_BENCH    optional asv --bench regex to run a subset
#   NIGHTLY_ASV_ARGS extra asv run arguments (e.g. "-a repeat=10")
#   NIGHTLY_AA       1 (default): re-run the newest commit once more and record the A/A night; 0: off
#   NIGHTLY_CONFIRM  1 (default): re-measure regressed benchmarks on base and head, interleaved, and keep
#                    only regressions every pair shows; 0: off. NIGHTLY_CONFIRM_ROUNDS pairs (default 2)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

PY=${PYTHON:-python}
CANARY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --canary)
      [ $# -ge 2 ] || { echo "error: nightly.sh --canary: needs a slowdown factor, e.g. --canary 1.3" >&2; exit 2; }
      CANARY=$2; shift 2 ;;
    --canary=*) CANARY=${1#--canary=}; shift ;;
    *) echo "error: nightly.sh: unknown argument '$1'; accepted: --canary FACTOR (e.g. 1.3)" >&2; exit 2 ;;
  esac
done
if [ -n "$CANARY" ] && ! $PY -c 'import sys; f = float(sys.argv[1]); sys.exit(not 1 < f <= 100)' "$CANARY" 2>/dev/null; then
  echo "error: nightly.sh --canary $CANARY: give a slowdown factor above 1 and at most 100 (e.g. 1.3)" >&2
  exit 2
fi
MODE=${NIGHTLY_MODE:-same}
FACTOR=${NIGHTLY_FACTOR:-1.1}
OUT=${NIGHTLY_OUT:-reports/html}
NDIR=${NIGHTLY_DIR:-.asv/nightly}
ROUNDS=${NIGHTLY_CONFIRM_ROUNDS:-2}
MACHINE=${RECSYS_MACHINE:-$($PY -c 'from recsys_impls.benchsupport import machine_name; print(machine_name())')}
export RECSYS_MACHINE=$MACHINE
# Huge pages for the tables, as `python -m recsys_impls` gives its own runs (asv is started directly here).
HUGE_PAGES_ENV=$($PY -m recsys_impls.hugepages) || exit 2
[ -n "$HUGE_PAGES_ENV" ] && export "${HUGE_PAGES_ENV?}"
unset RECSYS_CANARY_SLOWDOWN  # only the A/A re-run below may slow the canary
BENCH_ARGS=()
[ -n "${NIGHTLY_BENCH:-}" ] && BENCH_ARGS+=(--bench "$NIGHTLY_BENCH")
# shellcheck disable=SC2206
[ -n "${NIGHTLY_ASV_ARGS:-}" ] && BENCH_ARGS+=($NIGHTLY_ASV_ARGS)
if [ -n "$CANARY" ] && [ "$MODE" != same ]; then
  echo "error: nightly.sh --canary: needs NIGHTLY_MODE=same (the A/A re-run of the current tree)" >&2; exit 2
fi
if [ -n "$CANARY" ] && [ "${NIGHTLY_AA:-1}" != 1 ]; then
  echo "error: nightly.sh --canary: needs the A/A re-run (NIGHTLY_AA=1)" >&2; exit 2
fi
mkdir -p "$NDIR" "$OUT"

# The results file asv wrote for a commit on this machine (one environment: --python=same).
result_file() {  # $1 results dir, $2 commit
  ls -t "$1/$MACHINE/${2:0:8}"-*.json 2>/dev/null | head -1 || true
}
# asv run of the current tree under the commit hash $1 (asv sets ASV_COMMIT only for environments it
# builds; the suite files its records under it).
run_same() {  # $1 commit, then asv arguments
  local commit=$1; shift
  ASV_COMMIT=$commit $PY -m asv run --python=same --set-commit-hash "$commit" --machine "$MACHINE" \
    --record-samples "$@"
}

echo "== nightly on machine $MACHINE (mode $MODE${CANARY:+, canary x$CANARY})"
$PY -m asv machine --yes --machine "$MACHINE" >/dev/null
$PY -m recsys_impls.measure.peaks --refresh --framework torch,tf || echo "note: peaks refresh failed (roofline scores will measure their own); continuing"

# Raw samples let `reports regressions` use asv's Mann-Whitney test instead of the factor alone.
set +e
if [ "$MODE" = envs ]; then
  $PY -m asv run NEW --machine "$MACHINE" --record-samples --show-stderr "${BENCH_ARGS[@]}"
  status=$?
elif [ "$MODE" = same ]; then
  HEAD=$(git rev-parse HEAD)
  run_same "$HEAD" --show-stderr "${BENCH_ARGS[@]}"
  status=$?
else
  echo "error: NIGHTLY_MODE=$MODE; accepted: same, envs" >&2
  exit 2
fi
set -e
# asv exits non-zero when a single benchmark fails; the others are saved and the failure shows in
# the report and as "now fails" in the regression summary, so carry on.
if [ "$status" -ne 0 ]; then echo "note: asv run exited $status (some benchmark failed); continuing"; fi

# A/A: the same commit once more, right away. What the gate flags between the two runs is a false
# alarm; with --canary the second run slows the canary by that factor, and it must be flagged. The
# first run stays the night's result in the store.
aa_status=0
if [ "${NIGHTLY_AA:-1}" = 1 ] && [ "$MODE" = same ]; then
  FIRST=$(result_file .asv/results "$HEAD")
  if [ -z "$FIRST" ]; then
    echo "note: no results file for ${HEAD:0:8} on $MACHINE: no A/A night"
  else
    cp "$FIRST" "$NDIR/aa-first.json"
    echo "== A/A: re-running ${HEAD:0:8}${CANARY:+ with the canary slowed x$CANARY}"
    RECSYS_CANARY_SLOWDOWN=${CANARY:-1} run_same "$HEAD" "${BENCH_ARGS[@]}" || true
    cp "$(result_file .asv/results "$HEAD")" "$NDIR/aa-second.json"
    cp "$NDIR/aa-first.json" "$FIRST"
    cp .asv/results/benchmarks.json "$NDIR/benchmarks.json"
    set +e
    $PY -m reports aa --first "$NDIR/aa-first.json" --second "$NDIR/aa-second.json" --machine "$MACHINE" \
      --factor "$FACTOR" --nightly "$NDIR" ${CANARY:+--canary "$CANARY"}
    aa_status=$?
    set -e
    if [ "$aa_status" -eq 2 ]; then exit 2; fi
  fi
fi

$PY -m asv publish
$PY -m reports build --out "$OUT" --factor "$FACTOR" --nightly "$NDIR"

mapfile -t COMMITS < <($PY -m reports commits --machine "$MACHINE")
if [ "${#COMMITS[@]}" -lt 2 ]; then
  echo "only ${#COMMITS[@]} commit(s) with results on $MACHINE: no regression check yet"
  exit "$aa_status"
fi
BASE=${COMMITS[-2]}
HEAD_RESULT=${COMMITS[-1]}
echo "== regressions: $HEAD_RESULT vs $BASE"
set +e
$PY -m reports regressions --base "$BASE" --head "$HEAD_RESULT" --machine "$MACHINE" --factor "$FACTOR" \
  --unstable "$NDIR/unstable.json" --only-changed --markdown "$OUT/regressions.md" \
  --regressed-list "$OUT/regressed.txt"
status=$?
set -e
# Confirmation pass: a machine's speed drifts between runs (the same commit benchmarked twice here
# flagged 1 of 14 CPU micro-benchmarks, its whole sample distribution shifted), so re-measure what
# regressed on base AND head, in turns (base, head, base, head ...), and keep only the regressions that
# every pair shows. The base runs from a temporary worktree of the base commit (its own code on
# ASV_PYTHONPATH, its own results folder). NIGHTLY_CONFIRM=0 turns it off; it needs mode same.
if [ "$status" -eq 1 ] && [ "${NIGHTLY_CONFIRM:-1}" = 1 ] && [ "$MODE" = same ] \
   && [ "$(git rev-parse HEAD | cut -c1-8)" = "${HEAD_RESULT:0:8}" ]; then
  if ! git cat-file -e "${BASE}^{commit}" 2>/dev/null; then
    echo "note: base commit $BASE is not in this clone: no confirmation pass; the regressions stand unconfirmed"
  else
    # asv matches a parameterised benchmark as "name(param, ...)": anchor the name, allow the params.
    REGEX=$(sed 's/[.]/\\./g; s/^/^/; s/$/(\\(|$)/' "$OUT/regressed.txt" | paste -sd'|')
    TREE=$(mktemp -d)/base
    trap 'git worktree remove --force "$TREE" >/dev/null 2>&1 || true' EXIT
    git worktree add --detach "$TREE" "$BASE" >/dev/null
    (cd "$TREE" && $PY -m asv machine --yes --machine "$MACHINE" >/dev/null)
    mkdir -p "$OUT/confirm"
    PAIRS=()
    echo "== confirming $(wc -l < "$OUT/regressed.txt") regressed benchmark(s): $ROUNDS interleaved base/head pair(s)"
    for i in $(seq 1 "$ROUNDS"); do
      (cd "$TREE" && ASV_PYTHONPATH=$TREE ASV_COMMIT=$BASE $PY -m asv run --python=same --set-commit-hash "$BASE" \
        --machine "$MACHINE" --record-samples --bench "$REGEX") || true
      B=$(result_file "$TREE/.asv/results" "$BASE")
      run_same "$HEAD" --bench "$REGEX" || true
      H=$(result_file .asv/results "$HEAD")
      if [ -n "$B" ] && [ -n "$H" ]; then
        cp "$B" "$OUT/confirm/base-$i.json"
        cp "$H" "$OUT/confirm/head-$i.json"
        PAIRS+=(--pair "$OUT/confirm/base-$i.json" "$OUT/confirm/head-$i.json")
      fi
    done
    cp .asv/results/benchmarks.json "$OUT/confirm/benchmarks.json"
    if [ "${#PAIRS[@]}" -eq 0 ]; then
      echo "note: the base could not be re-measured (no results from its worktree): the regressions stand unconfirmed"
    else
      set +e
      $PY -m reports confirm "${PAIRS[@]}" --machine "$MACHINE" --factor "$FACTOR" \
        --unstable "$NDIR/unstable.json" --markdown "$OUT/confirmation.md"
      status=$?
      set -e
    fi
  fi
fi
if [ "$aa_status" -ne 0 ]; then echo "the canary's x$CANARY slowdown was NOT flagged by the gate"; fi
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$aa_status"
