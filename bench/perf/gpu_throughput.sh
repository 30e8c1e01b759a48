#!/usr/bin/env bash
# The GPU throughput measurements of docs/performance.md in one go, on one CUDA device, most important first:
#
#     bash bench/perf/gpu_throughput.sh OUT [SECONDS]      (make perf-gpu OUT=... SECONDS=...)
#
# 1. the CUDA-only equality tests (captured PGD = eager PGD; AutoAttack's memory probe and single call);
# 2. the training step, real core against the reference loop, with and without --cuda-graph, for reat on
#    cnn-small (Fashion-MNIST-LT) and resnet18 (synthetic CIFAR-10 shape), with the evaluator's PGD-20 rate;
# 3. a quick pgd-at run on Fashion-MNIST-LT UR 100, then the evaluator's PGD-20, CW-100 and AutoAttack on its
#    1,000 test images (AutoAttack in as few calls as memory allows), with and without --cuda-graph;
# 4. runs per hour against --workers 1,4,8,12 (cnn-small) and 1,4,8 (resnet18, synthetic CIFAR-10);
# 5. a paper-protocol reat run of resnet18 on synthetic CIFAR-10-LT UR 100 for 8 of its 80 epochs (per-epoch
#    test included), timed.
#
# Every step writes OUT/<step>.json (or .log) and one line to OUT/steps.log (exit code, seconds); a step that
# fails or is cut by the time left is logged and the next one runs. SECONDS (default 540) bounds the whole
# script. Fashion-MNIST is read from LTBENCH_DATA (default ./data: put the four IDX files in
# data/fashion-mnist/); BENCH (default `python3 -m bench`) is the command that runs ltbench; DEVICE (default
# cuda) the device, e.g. cpu to check the commands on a machine without a GPU.
set -u
OUT=${1:?usage: gpu_throughput.sh OUT [SECONDS]}
BUDGET=${2:-540}
BENCH=${BENCH:-python3 -m bench}
DATA=${LTBENCH_DATA:-data}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
START=$(date +%s)
export PYTHONUNBUFFERED=1 LTBENCH_DATA="$DATA"

# step NAME LIMIT COMMAND...: run COMMAND for at most LIMIT seconds (less if the budget is nearly spent)
step() {
    local name=$1 limit=$2 left began rc
    shift 2
    left=$((BUDGET - ($(date +%s) - START)))
    if [ "$left" -lt 20 ]; then
        echo "$name skipped (budget spent)" | tee -a "$OUT/steps.log"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    began=$(date +%s.%N)
    timeout "$limit" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
    rc=$?
    printf '%s rc=%s %.1f s\n' "$name" "$rc" "$(echo "$(date +%s.%N) - $began" | bc)" | tee -a "$OUT/steps.log"
}

{ nvidia-smi; python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"; } >"$OUT/env.txt" 2>&1

step equality-tests 120 python3 -m pytest -q -p no:cacheprovider tests/test_graphed.py tests/test_aa_chunks.py \
    tests/test_evaluate.py -k cuda

FMNIST="--dataset fashion-mnist --arch cnn-small"
CIFAR="--dataset cifar10 --arch resnet18 --synthetic"
for graph in "" "--cuda-graph"; do
    tag=${graph:+-graph}
    step "step-cnn-small$tag" 90 $BENCH perf --method reat $FMNIST --batches 30 --eval-images 2000 \
        --device $DEVICE --precision fp32 $graph --json
    step "step-resnet18$tag" 90 $BENCH perf --method reat $CIFAR --batches 20 --eval-images 2000 \
        --device $DEVICE --precision fp32 $graph --json
done

step quick-run 120 $BENCH run --methods pgd-at --ur 100 $FMNIST --preset quick --suite fast --device $DEVICE \
    --out "$OUT/runs" --report-dir "$OUT/report" --no-progress
RUN=$(find "$OUT/runs" -maxdepth 1 -name '*pgd-at*' -type d 2>/dev/null | head -n 1)
if [ -n "$RUN" ]; then
    for graph in "" "--cuda-graph"; do
        step "eval-aa${graph:+-graph}" 150 $BENCH perf --eval-run "$RUN" --eval-images 1000 \
            --eval-attacks pgd20,cw100,aa --batches 5 --device $DEVICE --precision fp32 $graph --json
    done
fi

step packing-cnn-small 150 $BENCH perf --packing --workers 1,4,8,12 --method reat $FMNIST --device $DEVICE \
    --packing-epochs 2 --packing-suite fast --json
step packing-resnet18 150 $BENCH perf --packing --workers 1,4,8 --method reat $CIFAR --device $DEVICE \
    --packing-epochs 1 --packing-suite fast --json

CIFAR_ROOT="$OUT/synthetic-cifar"
python3 -c "import sys, pathlib; from bench.data.cifar import write_synthetic_cifar10; write_synthetic_cifar10(pathlib.Path(sys.argv[1]))" \
    "$CIFAR_ROOT" && step paper-resnet18-8-epochs 300 $BENCH run --methods reat --dataset cifar10 --arch resnet18 \
    --ur 100 --preset paper --epochs 8 --precision fp32 --set cuda_graph=true --suite fast --eval-n 1000 --device $DEVICE \
    --data-root "$CIFAR_ROOT" --out "$OUT/paper-runs" --no-report --no-progress

echo "done in $(( $(date +%s) - START )) s" | tee -a "$OUT/steps.log"
