#!/usr/bin/env bash
# GPU check: one command, on a machine with an NVIDIA GPU and PyTorch, that runs the GPU settings
# quickly and leaves their records, a profiler trace and an HTML report in OUTDIR (about 5 minutes on
# an H100). Nothing is installed: it uses whatever python finds.
#
#   benchmarks/gpu_check.sh [--strict] OUTDIR
#
# Runs, each as `python -m recsys_impls run ... --json OUTDIR/<name>.json` in its own process with
# its own timeout (one failing scenario never stops the others):
#   torch-cpu-fp32 (CPU baseline, tiny preset), and on the GPU with the dlrm-ref preset:
#   torch-cuda-{fp32,tf32,amp-bf16,amp-fp16,graphs,pinned,compile,int8}, tf-cuda-{fp32,xla-amp-bf16}
#   (TensorFlow ones skip with the reason when TensorFlow or its GPU support is absent),
# then a PyTorch profiler trace of one scenario into OUTDIR/profiles/, then the summary table,
# OUTDIR/summary.{md,html} and the full report OUTDIR/report/ when pandas, matplotlib and jinja2 exist.
#
# Exit status: 0 when no required scenario failed (skips are fine: a CPU-only machine skips every GPU
# scenario with the reason); 1 when a required scenario (the CPU baseline, the PyTorch GPU settings
# but int8, the profile) failed or timed out, or, with --strict (or GPU_CHECK_STRICT=1), when any
# scenario failed or timed out or a required one did not run ok; 2 on bad usage. Optional ones
# (int8, TensorFlow) that fail are reported, with a warning.
#
# Environment (all optional): PYTHON (interpreter), GPU_CHECK_STEPS (GPU training steps, 300),
# GPU_CHECK_PRESET (dlrm-ref), GPU_CHECK_EVAL (GPU eval samples, 50000), GPU_CHECK_TIMEOUT (seconds per
# scenario, 150), GPU_CHECK_DEADLINE (seconds after which no scenario starts or keeps running, 280),
# GPU_CHECK_MAX_AUTOTUNE=1 (also run torch.compile max-autotune, which takes minutes to compile),
# GPU_CHECK_CPU_STEPS (60),
# GPU_CHECK_CPU_EVAL (10000), GPU_CHECK_FRAMEWORKS ("torch tf": leave one out to skip it).
set -u -o pipefail

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

strict=${GPU_CHECK_STRICT:-0}
out=""
for arg in "$@"; do
    case "$arg" in
        --strict) strict=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "error: gpu_check.sh: unknown option $arg (accepted: --strict, --help)" >&2; exit 2 ;;
        *) if [ -n "$out" ]; then echo "error: gpu_check.sh: one OUTDIR only (got $out and $arg)" >&2; exit 2; fi
           out=$arg ;;
    esac
done
if [ -z "$out" ]; then
    echo "error: gpu_check.sh: give the output folder: benchmarks/gpu_check.sh [--strict] OUTDIR" >&2
    exit 2
fi
mkdir -p "$out/logs" "$out/profiles" || { echo "error: gpu_check.sh: cannot create $out" >&2; exit 2; }
out=$(cd "$out" && pwd)

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
py=${PYTHON:-$(command -v python || command -v python3 || true)}
if [ -z "$py" ]; then echo "error: gpu_check.sh: no python found (set PYTHON=...)" >&2; exit 2; fi
if ! command -v timeout >/dev/null; then echo "error: gpu_check.sh: needs coreutils 'timeout'" >&2; exit 2; fi

steps=${GPU_CHECK_STEPS:-300}
preset=${GPU_CHECK_PRESET:-dlrm-ref}
eval_samples=${GPU_CHECK_EVAL:-50000}
per_timeout=${GPU_CHECK_TIMEOUT:-150}
deadline=${GPU_CHECK_DEADLINE:-280}
cpu_steps=${GPU_CHECK_CPU_STEPS:-60}
cpu_eval=${GPU_CHECK_CPU_EVAL:-10000}
frameworks_asked=${GPU_CHECK_FRAMEWORKS:-torch tf}
frameworks=" $frameworks_asked "

status_file="$out/status.tsv"
: > "$status_file"
required_bad=0
failed=0
optional_failed=0

note() { printf '%s\n' "$*"; }
record_status() {  # name status seconds reason
    local reason=${4//$'\t'/ }
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${reason//$'\n'/ }" >> "$status_file"
    printf '  %-26s %-8s %6ss  %s\n' "$1" "$2" "$3" "$4"
}
mark() {  # required? status -> counters
    local required=$1 status=$2
    case "$status" in failed|timeout) if [ "$required" = 1 ]; then failed=1; else optional_failed=1; fi ;; esac
    if [ "$required" = 1 ] && [ "$status" != ok ]; then required_bad=1; fi
}
last_error() {  # the CLI's one-line error, else the last non-empty line of the log
    local line
    line=$(grep -E '^error: ' "$1" | tail -n 1)
    [ -z "$line" ] && line=$(grep -v '^[[:space:]]*$' "$1" | tail -n 1)
    printf '%s' "${line#error: }" | cut -c1-300
}
budget_left() { echo $(( deadline - SECONDS )); }

# run_one NAME REQUIRED CMD... : one scenario in its own process, bounded by a timeout.
run_one() {
    local name=$1 required=$2; shift 2
    local left=$(( $(budget_left) ))
    if [ "$left" -lt 20 ]; then
        record_status "$name" not-run 0 "the ${deadline}s deadline was reached before it started"
        mark "$required" not-run; return
    fi
    local limit=$(( left < per_timeout ? left : per_timeout ))
    local log="$out/logs/$name.log" t0=$SECONDS rc
    timeout -k 10 "$limit" "$@" > "$log" 2>&1
    rc=$?
    local took=$(( SECONDS - t0 )) status reason=""
    case $rc in
        0) status=ok ;;
        2) status=skipped; reason=$(last_error "$log") ;;
        124|137) status=timeout; reason="killed after ${limit}s (log: $log)" ;;
        *) status=failed; reason="exit $rc: $(last_error "$log") (log: $log)" ;;
    esac
    record_status "$name" "$status" "$took" "$reason"
    mark "$required" "$status"
}

scenario() {  # NAME REQUIRED FLAGS... : a `recsys_impls run` scenario
    local name=$1 required=$2; shift 2
    run_one "$name" "$required" "$py" -m recsys_impls run --quiet --json "$out/$name.json" "$@"
}

skip_all() {  # REASON REQUIRED NAMES...
    local reason=$1 required=$2; shift 2
    for name in "$@"; do record_status "$name" skipped 0 "$reason"; mark "$required" skipped; done
}

note "gpu_check: output in $out (python: $py; deadline ${deadline}s, ${per_timeout}s per scenario)"
if command -v nvidia-smi >/dev/null; then
    note "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader 2>&1 | head -n 2 | tr '\n' ';')"
else
    note "gpu: nvidia-smi not found"
fi

probe() {  # framework -> sets probe_ok (0/1) and probe_text
    local text
    text=$(timeout -k 5 90 "$py" -m recsys_impls.gpucheck probe "$1" 2>"$out/logs/probe-$1.log")
    local rc=$?
    probe_text=${text#ok: }; probe_text=${probe_text#skip: }
    if [ "$rc" = 0 ]; then probe_ok=1; else
        probe_ok=0
        [ -z "$probe_text" ] && probe_text="probe failed (exit $rc): $(last_error "$out/logs/probe-$1.log")"
    fi
}

asked() { [[ "$frameworks" == *" $1 "* ]]; }
probe_or_not() {  # framework: probe it, unless GPU_CHECK_FRAMEWORKS leaves it out
    if asked "$1"; then probe "$1"; else probe_ok=0; probe_text="not asked for (GPU_CHECK_FRAMEWORKS=$frameworks_asked)"; fi
}
probe_or_not torch; torch_ok=$probe_ok; torch_text=$probe_text
note "torch GPU: ${torch_text}"
probe_or_not tf; tf_ok=$probe_ok; tf_text=$probe_text
note "tf GPU: ${tf_text}"
note ""
note "scenarios:"

# CPU baseline: small and short, the same code path.
scenario torch-cpu-fp32 1 --framework torch --preset tiny --device cpu --steps "$cpu_steps" \
    --eval-samples "$cpu_eval"

gpu=(--framework torch --preset "$preset" --steps "$steps" --eval-samples "$eval_samples" --device cuda)
torch_required=(torch-cuda-fp32 torch-cuda-tf32 torch-cuda-amp-bf16 torch-cuda-amp-fp16 torch-cuda-graphs
                torch-cuda-pinned torch-cuda-compile)
if [ "$torch_ok" = 1 ]; then
    scenario torch-cuda-fp32 1 "${gpu[@]}" --precision fp32
    scenario torch-cuda-tf32 1 "${gpu[@]}" --precision tf32
    scenario torch-cuda-amp-bf16 1 "${gpu[@]}" --precision amp-bf16
    scenario torch-cuda-amp-fp16 1 "${gpu[@]}" --precision amp-fp16
    scenario torch-cuda-graphs 1 "${gpu[@]}" --compile cuda-graphs
    scenario torch-cuda-pinned 1 "${gpu[@]}" --pinned-memory
    scenario torch-cuda-compile 1 "${gpu[@]}" --compile torch-compile
    if [ "${GPU_CHECK_MAX_AUTOTUNE:-0}" = 1 ]; then
        scenario torch-cuda-compile-max-autotune 0 "${gpu[@]}" --compile torch-compile-max-autotune
    fi
else
    skip_all "$torch_text" 1 "${torch_required[@]}"
    skip_all "$torch_text" 0 torch-cuda-int8
fi

# One profiler trace (a diagnostic, never a timed figure): the GPU fp32 scenario, else the CPU baseline.
if [ "$torch_ok" = 1 ]; then
    run_one profile-torch-cuda-fp32 1 "$py" -m recsys_impls profile --torch-profiler \
        --out "$out/profiles/torch-cuda-fp32" "${gpu[@]}" --steps 40
    # int8 row-wise tables, where the GPU build supports them (the compressed run also reruns fp32).
    scenario torch-cuda-int8 0 "${gpu[@]}" --compression int8
else
    run_one profile-torch-cpu-fp32 1 "$py" -m recsys_impls profile --torch-profiler \
        --out "$out/profiles/torch-cpu-fp32" --framework torch --preset tiny --device cpu --steps 30
fi

tf_gpu=(--framework tf --preset "$preset" --steps "$steps" --eval-samples "$eval_samples" --device GPU:0)
if [ "$tf_ok" = 1 ]; then
    scenario tf-cuda-fp32 0 "${tf_gpu[@]}" --precision fp32
    scenario tf-cuda-xla-amp-bf16 0 "${tf_gpu[@]}" --compile xla --precision amp-bf16
else
    skip_all "$tf_text" 0 tf-cuda-fp32 tf-cuda-xla-amp-bf16
fi

note ""
timeout -k 5 120 "$py" -m recsys_impls.gpucheck summary "$out" || note "summary failed (records are in $out)"
note ""
note "gpu_check: $(( SECONDS ))s in all; per-scenario logs in $out/logs/"

# Strict: the required PyTorch GPU scenarios must all have run ok (on a CPU-only machine they skip).
if [ "$failed" = 1 ]; then note "gpu_check: FAILED (a required scenario failed or timed out; see above)"; exit 1; fi
if [ "$optional_failed" = 1 ]; then
    note "gpu_check: WARNING: an optional scenario (int8 or TensorFlow) failed or timed out; see above"
fi
if [ "$strict" = 1 ] && { [ "$required_bad" = 1 ] || [ "$optional_failed" = 1 ]; }; then
    note "gpu_check: FAILED (--strict: a required scenario did not run ok, or an optional one failed)"; exit 1
fi
note "gpu_check: done"
exit 0
