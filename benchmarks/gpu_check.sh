#!/usr/bin/env bash
# One GPU check of vaezoo for an offline machine whose python3 already has torch, torchvision, pluggy,
# typer, rich, safetensors and pytest: install vaezoo (no downloads), the CUDA tests and a few CPU test
# modules, the training-speed benchmark on CUDA at batch 64 (vaezoo, whose step is a CUDA graph by
# default, against the fixed plain script: issue 19's target is 4x) and 256 with the evaluation
# throughput, the loop with and without the graph (images/s, same-seed metrics within a stated
# tolerance, and bit for bit under deterministic algorithms; NVAE's step too where a plugin registers
# it), streamed against in-memory training (issue 16's benchmark, where the tree has it), then a
# 10-epoch `vaezoo train conv-fashion --beta 1`, its evaluation, and -log p(x) of the whole test set
# with K = 5000. Logs go to $OUT and a summary table comes last. Every step runs even
# when an earlier one failed; a step is skipped when less of the time budget is left than it needs,
# and stopped when the budget runs out.
#
#   bash benchmarks/gpu_check.sh [FASHION_DIR]   # the four FashionMNIST IDX .gz files (default .fmnist)
#
#   OUT                where the logs go (default: a new temporary folder); at most 7 files
#   GPU_CHECK_BUDGET   seconds for the whole check (default 540)
#   GPU_CHECK_DEVICE   cuda (default); cpu to try this script on a machine without a GPU
#   GPU_CHECK_SMALL=1  a few steps of everything: checks the script, measures nothing
set -u -o pipefail
cd "$(dirname "$0")/.."

export PYTHONUNBUFFERED=1 COLUMNS=120
export FASHION=${1:-.fmnist} DEVICE=${GPU_CHECK_DEVICE:-cuda}
export OUT=${OUT:-$(mktemp -d)} WORK=$(mktemp -d)
BUDGET=${GPU_CHECK_BUDGET:-540}
if [ "${GPU_CHECK_SMALL:-0}" = 1 ]; then
  export BENCH="--steps 3 --rounds 1 --eval-images 200 --eval-k 5" TRAIN="--epochs 1 --max-steps 5" EVAL_K=1 \
    STEPS="--steps 8 --rounds 1 --test-images 200" BIG_K=2 STREAM="--steps 5 --rounds 1"
else
  export BENCH="--rounds 3" TRAIN="--epochs 10" EVAL_K=40 STEPS="--steps 200 --rounds 3" BIG_K=5000 \
    STREAM="--batch-size 64 --steps 1000 --rounds 3"
fi
mkdir -p "$OUT"

install_vaezoo() {  # no index, no build isolation: the image's setuptools builds the editable install
  python3 -m pip install -q --no-deps --no-build-isolation --no-index -e .
}

environment() {
  nvidia-smi -L
  python3 -c 'import platform, torch, torchvision
print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")'
  python3 -m vaezoo --version && python3 -c 'from vaezoo.registry import get_registry
print("variants:", ", ".join(get_registry().names("variant")))'
}

tests_cuda() { python3 -m pytest -v -p no:cacheprovider tests/test_cuda.py && python3 -m pytest -v -p no:cacheprovider -m cuda tests/test_precision.py; }

tests_cpu() {
  python3 -m pytest -q -x -p no:cacheprovider tests/test_conv_fashion.py tests/test_weight_decay.py \
    tests/test_benchmark_reference.py tests/test_evaluation.py tests/test_resume.py tests/test_training.py \
    tests/test_graphs.py tests/test_evaluation_reference.py
}

bench() {  # bench BATCH_SIZE [MORE OPTIONS]
  python3 benchmarks/train_speed.py --device "$DEVICE" --data "$FASHION" --batch-size "$1" $BENCH "${@:2}"
}

step_graphs() {  # the loop with and without the CUDA graph: images/s, same-seed metrics within the tolerance
  python3 benchmarks/step_speed.py --device "$DEVICE" --data "$FASHION" $STEPS
}

step_graphs_exact() {  # under deterministic algorithms the graph replays the eager step bit for bit
  python3 benchmarks/step_speed.py --device "$DEVICE" --data "$FASHION" --variants conv-fashion --deterministic \
    --steps 50 --rounds 1 --test-images 500
}

evaluate_run() {  # evaluate_run K FILE: the 10-epoch run's measures with K importance samples, in one line
  python3 -m vaezoo evaluate "$WORK/conv-fashion" --device "$DEVICE" --data-dir "$FASHION" -k "$1" --out "$2" || return
  python3 - "$2" <<'PY'
import json, sys

r = json.load(open(sys.argv[1]))
print(f"final test, K={r['importance_samples']}: -ELBO {r['neg_elbo']:.2f} nats/image, -log p(x) {r['nll']:.2f}, "
      f"{r['images']} images on {r['device']} in {r['seconds']:.1f} s")
PY
}

stream() {  # issue 16's streamed against in-memory training on the GPU (issue 19's figure), where it is in the tree
  if [ ! -f benchmarks/stream_speed.py ]; then
    echo "median images/s: not measured, benchmarks/stream_speed.py (issue 16) is not in this tree"
    return 0
  fi
  python3 benchmarks/stream_speed.py --device "$DEVICE" $STREAM
}

train_and_evaluate() {
  python3 -m vaezoo train conv-fashion --beta 1 --device "$DEVICE" --data-dir "$FASHION" \
    --out "$WORK/conv-fashion" $TRAIN || return
  cp "$WORK/conv-fashion/metrics.jsonl" "$OUT/metrics.jsonl"
  evaluate_run "$EVAL_K" "$OUT/eval.json"
}

export -f install_vaezoo environment tests_cuda tests_cpu bench step_graphs step_graphs_exact evaluate_run stream train_and_evaluate

FAILED=0
step() {  # step NAME LOG NEEDS_S CAP_S FIGURE_REGEX FUNCTION [ARGS...]: one row of the summary
  local name=$1 log=$OUT/$2 needs=$3 cap=$4 figure=$5 left=$((BUDGET - SECONDS)) start=$SECONDS rc status
  shift 5
  if ((left < needs)); then
    printf '%-12s skipped: %s s of the budget left, it needs %s s\n' "$name" "$left" "$needs" |
      tee -a "$log" "$WORK/summary"
    return
  fi
  echo "=== $name: $* ($(date +%T), ${left} s of ${BUDGET} s left)" | tee -a "$log"
  timeout --kill-after=15 $((cap < left ? cap : left)) bash -c '"$@"' _ "$@" 2>&1 | tee -a "$log" "$WORK/$name"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) status=ok ;;
    124 | 137) status="stopped after $((SECONDS - start)) s (time limit)"; FAILED=$((FAILED + 1)) ;;
    *) status="FAILED (exit $rc)"; FAILED=$((FAILED + 1)) ;;
  esac
  printf '%-12s %-36s %4s s\n' "$name" "$status" $((SECONDS - start)) >>"$WORK/summary"
  grep -E "$figure" "$WORK/$name" | tail -n 2 | sed 's/^/    /' >>"$WORK/summary"
}

#    name        log         needs cap  summary lines (the last two matches)        command
step install     setup.log   5     120  'ERROR'                                      install_vaezoo
step environment setup.log   5     60   '^device:'                                   environment
step tests-cuda  tests.log   30    150  ' (passed|failed|error|skipped)'             tests_cuda
step tests-cpu   tests.log   30    120  ' (passed|failed|error|skipped)'             tests_cpu
step bench-64    bench.log   90    180  '^(median|vaezoo /|evaluation)'              bench 64
step graphs      bench.log   60    150  '(ratio|tolerance)'                          step_graphs
step graphs-bits bench.log   20    90   'tolerance'                                  step_graphs_exact
step bench-256   bench.log   45    120  '^median'                                    bench 256 --eval-k 0
step stream      bench.log   30    90   '^(median|final loss)'                       stream
step train-10    train.log   180   270  '^(epoch [0-9]+/|final test)'                train_and_evaluate
step eval-5000   train.log   20    90   '^final test, K='                            evaluate_run "$BIG_K" "$WORK/eval-big-k.json"

{
  echo
  echo "gpu check: $FAILED step(s) failed, $SECONDS s of the ${BUDGET} s budget, logs in $OUT"
  cat "$WORK/summary"
} | tee "$OUT/summary.txt"
exit $((FAILED > 0))
