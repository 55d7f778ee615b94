#!/usr/bin/env bash
# The one command a GPU session runs, from a fresh machine where the repository arrived as a
# working tree and nothing can be fetched (see benchmarks/README.md):
#
#     CONVNET_COMMIT=<sha> bash benchmarks/gpu_run.sh
#
# Steps, in this order (tests and the four sanitizers at the same time: their timings matter to
# nobody, and one GPU holds them all), each under `timeout` and the whole run under a budget
# (default 570 s, for a 600 s call), so that one hang cannot lose the report:
#   build      pip install -e . with CONVNET_CUDA_ARCHS=90; then convnet._C must import from
#              the repository root and carry the CUDA kernels
#   tests      pytest -m cuda tests  -> cuda-tests.xml
#   memcheck   compute-sanitizer --tool memcheck over tests/sanitize_subset.txt (the cuda tests
#              that together run every kernel; tools/kernel_emulator/sanitize_subset.py) at
#              small shapes
#   racecheck, initcheck, synccheck   the other three tools, the same
#   bench      benchmarks/bench_kernels.py (validate, then time; peaks and cuDNN in the same run)
#   twogpu     benchmarks/bench_twogpu.py: the two-tower AlexNet step (--gpu 0,0 on one GPU)
#              against the one-GPU grouped net, the time in copies, the bytes copied per step
#   pipeline   (not in the default list: name it in CONVNET_STEPS) benchmarks/bench_pipeline.py
#              --simulate --gpu: JPEG decode + crop + flip, one core and every core (threads
#              and processes), and the fraction of a stand-in GPU training step's loop spent
#              waiting for data; about 110 s on a 16-core host, its JSON written at its end;
#              simplejpeg is not on the GPU machine: carry its wheel (benchmarks/README.md)
#   train      only when data/fashion-mnist exists: convnet-train on the Fashion net
#              ($CONVNET_TRAIN_ARGS), cuda backend, stopped at its time box
#              ($CONVNET_TRAIN_LIMIT_S, or what is left of the budget); its final test error
#              goes in the report
# After every step the merged report is rewritten: $OUT/<date>-<device>.json (DESIGN.md's
# format), with $OUT/cuda-tests.xml and $OUT/logs.tar.gz (every step's log, the bench's raw
# events, the sanitizers' reports).
# At the end the report is also copied to benchmarks/results/ (on the GPU machine that copy is
# lost: the session copies the file that came back from $OUT and commits it).
#
# Environment (all optional):
#   OUT                   output folder (default ./gpu-out)
#   CONVNET_COMMIT        the commit being measured (when the tree has no .git)
#   CONVNET_STEPS         comma-separated subset, e.g. build,memcheck,racecheck (default
#                         build,tests,memcheck,racecheck,initcheck,synccheck,bench,twogpu,
#                         train: the GPU proof issue's order; add pipeline
#                         by naming it, e.g. build,pipeline,train)
#   CONVNET_GPU_BUDGET_S  seconds for the whole run (default 570)
#   CONVNET_BENCH_ARGS    extra bench_kernels.py arguments, e.g. "--quick", "--only conv" or
#                         "--ab" (kernel variants timed beside the defaults)
#   CONVNET_BENCH_LIMIT_S time box of the bench step (default 210; the bench stops itself 15 s
#                         before it, report written)
#   CONVNET_SANITIZE_K    a pytest -k expression over the whole cuda suite for the sanitizer
#                         runs instead of tests/sanitize_subset.txt
#   CONVNET_SANITIZE_LIMIT_S  time box of each sanitizer run (default 200)
#   CONVNET_PIPELINE_ARGS bench_pipeline.py arguments after --simulate --gpu --json FILE
#                         (default "--images 2048 --seconds 2", which it replaces; e.g. add
#                         "--simulate 5000 925" for other step rates)
#   CONVNET_TRAIN_ARGS    the net and options of the train step (default "layers/fashion.cfg
#                         layers/fashion-params.cfg"; the full recipe: "layers/fashion-full.cfg
#                         layers/fashion-full-params.cfg --epochs 24"); --backend cuda,
#                         --data-path and --save-path are added
#   CONVNET_TRAIN_LIMIT_S time box of the train step (default 150; capped by the budget)
#   PYTHON                the interpreter (default python3)
set -u
export PYTHONUNBUFFERED=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
OUT="${OUT:-$ROOT/gpu-out}"
mkdir -p "$OUT"
WORK="${CONVNET_WORK:-/tmp/convnet-gpu-run}"
rm -rf "$WORK"
mkdir -p "$WORK"
PY="${PYTHON:-python3}"
BUDGET="${CONVNET_GPU_BUDGET_S:-570}"
STEPS="${CONVNET_STEPS:-build,tests,memcheck,racecheck,initcheck,synccheck,bench,twogpu,train}"
SANITIZERS="memcheck racecheck initcheck synccheck"  # benchmarks/report.py's SANITIZERS
SAN_K="${CONVNET_SANITIZE_K:-}"
SAN_LIMIT="${CONVNET_SANITIZE_LIMIT_S:-200}"
BENCH_LIMIT="${CONVNET_BENCH_LIMIT_S:-210}"
PIPELINE_ARGS="${CONVNET_PIPELINE_ARGS:---images 2048 --seconds 2}"
TRAIN_ARGS="${CONVNET_TRAIN_ARGS:-layers/fashion.cfg layers/fashion-params.cfg}"
TRAIN_LIMIT="${CONVNET_TRAIN_LIMIT_S:-150}"
RESERVE=15
START=$(date +%s)
export PY ROOT

DATE=$(date -u +%Y-%m-%d)
COMMIT="${CONVNET_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
DEVICE=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
DEVICE="${DEVICE:-unknown-gpu}"
SLUG=$("$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); import report; print(report.device_slug(sys.argv[1]))" "$DEVICE" 2>/dev/null \
    || printf '%s' "$DEVICE" | tr 'A-Z ' 'a-z-')
REPORT="$OUT/$DATE-$SLUG.json"
TRAIN_STATUS=""
ANY_FAILED=0

echo "[gpu_run] device '$DEVICE', commit $COMMIT, steps $STEPS, budget ${BUDGET}s"
echo "[gpu_run] report -> $REPORT"

elapsed() { echo $(( $(date +%s) - START )); }
wanted() { [[ ",$STEPS," == *",$1,"* ]]; }

# step_limit BOX: the seconds a step may take: BOX, or what is left before the reserve.
step_limit() {
    local left=$(( BUDGET - $(elapsed) - RESERVE ))
    if (( left < $1 )); then echo "$left"; else echo "$1"; fi
}

record() {  # name rc seconds limit status
    printf '{"step": "%s", "rc": %s, "seconds": %s, "limit_s": %s, "status": "%s"}\n' \
        "$1" "$2" "$3" "$4" "$5" >> "$WORK/steps.jsonl"
}

refresh_report() {
    local train_args=() sanitizer_args=() tool
    for tool in $SANITIZERS; do
        sanitizer_args+=(--"$tool"-log "$WORK/$tool-tool.log" --"$tool"-junit "$WORK/$tool-tests.xml")
    done
    if [ -n "$TRAIN_STATUS" ]; then
        train_args=(--train-status "$TRAIN_STATUS" --train-metrics "$WORK/run-cuda/metrics.jsonl")
    fi
    "$PY" benchmarks/report.py merge --quiet --out "$REPORT" --device "$DEVICE" \
        --commit "$COMMIT" --date "$DATE" --bench "$WORK/bench.json" \
        --twogpu "$WORK/twogpu.json" --pipeline "$WORK/pipeline.json" \
        --junit "$OUT/cuda-tests.xml" --steps "$WORK/steps.jsonl" \
        "${sanitizer_args[@]}" "${train_args[@]}" > "$WORK/report-merge.log" 2>&1 \
        || { echo "[gpu_run] report merge failed:"; tail -n 5 "$WORK/report-merge.log"; }
    # every log, truncated to its last 4 MB, in one archive ($OUT brings back 8 files at most)
    rm -rf "$WORK/.logs" && mkdir -p "$WORK/.logs"
    find "$WORK" -maxdepth 2 -type f \( -name '*.log' -o -name '*.xml' -o -name '*.json' \
        -o -name '*.jsonl' \) -not -path "$WORK/.logs/*" -print0 2>/dev/null |
    while IFS= read -r -d '' f; do
        rel="${f#"$WORK"/}"
        mkdir -p "$WORK/.logs/$(dirname "$rel")"
        tail -c 4000000 "$f" > "$WORK/.logs/$rel"
    done
    tar -czf "$OUT/logs.tar.gz.tmp" -C "$WORK/.logs" . 2>/dev/null \
        && mv -f "$OUT/logs.tar.gz.tmp" "$OUT/logs.tar.gz"
}

# step NAME LIMIT COMMAND...: run under timeout (SIGINT first, so pytest still writes its XML
# and training checkpoints; SIGKILL 20 s later), log to $WORK/NAME.log, record the outcome;
# returns the command's exit status. Safe to run in the background (concurrent_steps).
step() {
    local name=$1 limit=$2
    shift 2
    if (( limit < 10 )); then
        record "$name" null 0 "$limit" "skipped: out of time"
        echo "[gpu_run] $name: skipped (out of time at $(elapsed)s)"
        return 99
    fi
    echo "[gpu_run] $name: start at $(elapsed)s, limit ${limit}s"
    local t0 rc secs status
    t0=$(date +%s)
    timeout -s INT -k 20 "$limit" "$@" > "$WORK/$name.log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - t0 ))
    case $rc in
        0) status="ok" ;;
        124|137) status="timeout after ${limit}s" ;;
        *) status="failed (rc $rc)" ;;
    esac
    if [[ " tests $SANITIZERS " == *" $name "* ]]; then  # pytest's exit codes
        case $rc in
            1) status="tests failed (rc 1)" ;;
            5) status="no tests ran (rc 5)" ;;
        esac
    fi
    record "$name" "$rc" "$secs" "$limit" "$status"
    echo "[gpu_run] $name: $status in ${secs}s"
    if (( rc != 0 )); then
        tail -n 15 "$WORK/$name.log" | sed "s/^/    $name| /"
    fi
    return $rc
}

# run_step NAME LIMIT COMMAND...: step, then the report rewritten.
run_step() {
    local rc=0
    step "$@" || rc=$?
    if (( rc != 0 && rc != 99 )); then ANY_FAILED=1; fi
    refresh_report
    return $rc
}

# concurrent_steps: the steps queued by queue_step (NAME LIMIT COMMAND... each) all at once,
# then the report; for steps whose timing nobody reads (the tests and the four sanitizers).
QUEUED=()
queue_step() { QUEUED+=("$(printf '%q ' "$@")"); }
concurrent_steps() {
    local pids=() cmd pid
    for cmd in "${QUEUED[@]}"; do
        eval "step $cmd" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || { local rc=$?; (( rc == 99 )) || ANY_FAILED=1; }
    done
    QUEUED=()
    refresh_report
}

skip_step() {  # name why
    record "$1" null 0 0 "skipped: $2"
    echo "[gpu_run] $1: skipped ($2)"
}

# ---- environment ---------------------------------------------------------------------------
{
    nvidia-smi 2>&1 | head -n 15
    "$PY" -c "import sys; print('python', sys.version)"
    "$PY" -c "import cupy; print('cupy', cupy.__version__)" 2>&1 | tail -n 1
    "$PY" -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())" 2>&1 | tail -n 1
    command -v nvcc && nvcc --version | tail -n 2
} > "$WORK/env.log" 2>&1
grep -E "^(python|cupy|torch) " "$WORK/env.log" | sed 's/^/[gpu_run] /'

# ---- build ---------------------------------------------------------------------------------
# convnet._C must import from the repository root (where every later step runs): an editable
# install maps it there; if that fails, the built module is copied next to the sources.
ensure_import() {
    local check="import convnet; from convnet import _C; \
assert convnet.built_with_cuda(), 'convnet._C was built without CUDA'; print('convnet._C:', _C.__file__)"
    if "$PY" -c "$check"; then return 0; fi
    echo "editable import failed; looking for a built convnet/_C*.so to copy into the tree"
    local so site
    site=$("$PY" -c 'import site; print(site.getsitepackages()[0])')
    so=$(find "$ROOT/build" "$site" -name '_C*.so' -path '*convnet*' -printf '%T@ %p\n' \
        2>/dev/null | sort -rn | head -n 1 | cut -d' ' -f2-)
    if [ -n "$so" ]; then
        echo "copying $so -> $ROOT/convnet/"
        cp "$so" "$ROOT/convnet/" && "$PY" -c "$check" && return 0
    fi
    return 1
}
build() {
    # a CMake cache from another machine (the in-place editable build writes it into the
    # repository root) would stop CMake: drop one that names another source folder
    if [ -f CMakeCache.txt ] && ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$ROOT" CMakeCache.txt; then
        echo "removing a CMake cache made elsewhere"
        rm -rf CMakeCache.txt CMakeFiles
    fi
    CONVNET_CUDA_ARCHS=90 CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$PY" -m pip install --no-build-isolation --no-deps --no-index -v -e . || return $?
    ensure_import
}
export -f build ensure_import

BUILD_OK=1
if wanted build; then
    run_step build "$(step_limit 300)" bash -c build || BUILD_OK=0
else
    skip_step build "not in CONVNET_STEPS"
    "$PY" -c "import convnet._C" 2>/dev/null || BUILD_OK=0
fi

PYTEST_EXTRA=(-p no:cacheprovider)
if "$PY" -c "import pytest_timeout" 2>/dev/null; then
    PYTEST_EXTRA+=(--timeout=300)
fi

# ---- the cuda tests and compute-sanitizer's four tools, at the same time ----------------------
# (one GPU holds them all; the sanitizers run tests/sanitize_subset.txt at small shapes)
if wanted tests; then
    queue_step tests "$(step_limit 240)" "$PY" benchmarks/run_pytest.py -m cuda -q tests \
        "${PYTEST_EXTRA[@]}" -rfE --junitxml="$OUT/cuda-tests.xml"
else
    skip_step tests "not in CONVNET_STEPS"
fi
SANITIZER=$(command -v compute-sanitizer || true)
for candidate in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    if [ -z "$SANITIZER" ] && [ -x "$candidate" ]; then SANITIZER=$candidate; fi
done
if [ -n "$SAN_K" ]; then
    SAN_TESTS=(-m cuda tests -k "$SAN_K")
else
    mapfile -t SAN_TESTS < <(grep -v '^#' tests/sanitize_subset.txt | grep .)
fi
for tool in $SANITIZERS; do
    if ! wanted "$tool"; then
        skip_step "$tool" "not in CONVNET_STEPS"
    elif [ -z "$SANITIZER" ]; then
        skip_step "$tool" "compute-sanitizer not found"
    else
        queue_step "$tool" "$(step_limit "$SAN_LIMIT")" env CONVNET_SMALL_SHAPES=1 \
            PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SANITIZER" --tool "$tool" \
            --report-api-errors no --print-limit 100 --log-file "$WORK/$tool-tool.log" \
            "$PY" benchmarks/run_pytest.py --no-pools -q "${SAN_TESTS[@]}" "${PYTEST_EXTRA[@]}" \
            --junitxml="$WORK/$tool-tests.xml"
    fi
done
concurrent_steps
[ -f "$WORK/tests.log" ] && tail -n 1 "$WORK/tests.log" | sed 's/^/    tests| /'
for tool in $SANITIZERS; do
    grep -hE "(ERROR|RACECHECK) SUMMARY" "$WORK/$tool-tool.log" 2>/dev/null | sort | uniq -c \
        | sed "s/^/    $tool| /"
done

# ---- microbenchmarks -----------------------------------------------------------------------
if wanted bench; then
    limit=$(step_limit "$BENCH_LIMIT")
    read -r -a bench_args <<< "${CONVNET_BENCH_ARGS:-}"  # split on spaces, no globbing
    run_step bench "$limit" "$PY" benchmarks/bench_kernels.py --out "$WORK/bench.json" \
        --time-budget $(( limit > 30 ? limit - 15 : 15 )) "${bench_args[@]}"
else
    skip_step bench "not in CONVNET_STEPS"
fi

# ---- two-tower AlexNet against the one-GPU grouped net -----------------------------------------
if wanted twogpu; then
    run_step twogpu "$(step_limit 90)" "$PY" benchmarks/bench_twogpu.py --out "$WORK/twogpu.json"
else
    skip_step twogpu "not in CONVNET_STEPS"
fi

# ---- the image pipeline: decode rates, and a stand-in GPU training step fed by it --------------
if ! wanted pipeline; then
    skip_step pipeline "not in CONVNET_STEPS"
elif [ "$BUILD_OK" != 1 ]; then
    skip_step pipeline "no CUDA build"
else
    read -r -a pipeline_args <<< "$PIPELINE_ARGS"
    run_step pipeline "$(step_limit 180)" "$PY" benchmarks/bench_pipeline.py --simulate --gpu \
        --json "$WORK/pipeline.json" "${pipeline_args[@]}"
    grep -E "one core|waits for data" "$WORK/pipeline.log" | sed 's/^/    pipeline| /'
fi

# ---- Fashion-MNIST training on the GPU (optional) ----------------------------------------------
DATA=""
for d in "$ROOT/data/fashion-mnist" /usr/share/datasets/fashion-mnist; do
    if [ -z "$DATA" ] && [ -d "$d" ]; then DATA=$d; fi
done
if ! wanted train; then
    skip_step train "not in CONVNET_STEPS"
elif [ -z "$DATA" ]; then
    skip_step train "no data/fashion-mnist in the tree"
elif [ "$BUILD_OK" != 1 ]; then
    skip_step train "no CUDA build"
else
    if command -v convnet-train > /dev/null; then
        TRAIN=(convnet-train)
    else
        TRAIN=("$PY" -c "import sys; from convnet.apps.cli import main; sys.exit(main())")
    fi
    failed_before=$ANY_FAILED
    read -r -a train_net <<< "$TRAIN_ARGS"
    echo "[gpu_run] train: ${train_net[*]}"
    run_step train "$(step_limit "$TRAIN_LIMIT")" "${TRAIN[@]}" "${train_net[@]}" \
        --backend cuda --data-path "$DATA" --save-path "$WORK/run-cuda"
    case $? in
        0) TRAIN_STATUS="finished" ;;
        124|137) TRAIN_STATUS="stopped at its time budget"; ANY_FAILED=$failed_before ;;
        *) TRAIN_STATUS="failed" ;;
    esac
    grep -E "test error|top-1" "$WORK/train.log" | tail -n 2 | sed 's/^/    train| /'
fi

# ---- the report ----------------------------------------------------------------------------
refresh_report
mkdir -p "$ROOT/benchmarks/results" && cp "$REPORT" "$ROOT/benchmarks/results/" 2>/dev/null
echo "[gpu_run] done in $(elapsed)s; report $REPORT"
"$PY" benchmarks/report.py table "$REPORT" || cat "$REPORT"
exit $ANY_FAILED
