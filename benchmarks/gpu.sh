#!/usr/bin/env bash
# Every GPU figure of benchmarks/README.md in one run, on a machine with CUDA, PyTorch, SB3 and gymnasium:
# the CUDA tests, then benchmarks/speed.py on the tiny, demo and paper configurations (eager against SB3's SAC
# with the same critic ensemble; the compiled graphs with CUDA graphs, bf16; env steps/s of full training on the
# AntMaze-sized synthetic task, eager and compiled), and the paper configuration again with TF32 matmuls.
# Written to fit in 10 minutes on an H100 (not yet run on one). Each step runs even if one before it
# failed; the exit status says whether all passed. Writes markdown and logs to the folder given as $1
# (default benchmarks/gpu_results).
#
#     bash benchmarks/gpu.sh /tmp/gpu_results
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/gpu_results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python="${PYTHON:-python3}"
status=0

run() {  # run LOG COMMAND...: the command's output to the screen and to $out/LOG
  local log=$1
  shift
  "$@" 2>&1 | tee "$out/$log" || { status=1; echo "FAILED: $*" | tee -a "$out/$log"; }
}

run gpu.txt nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
run cuda_tests.txt "$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py
run speed_tiny_cuda.md "$python" benchmarks/speed.py --config tiny --device cuda --compile-mode reduce-overhead
run speed_demo_cuda.md "$python" benchmarks/speed.py --config demo --device cuda --compile-mode reduce-overhead
run speed_paper_cuda.md "$python" benchmarks/speed.py --config paper --device cuda --compile-mode reduce-overhead
run speed_paper_cuda_tf32.md "$python" benchmarks/speed.py --config paper --device cuda --matmul-precision high \
  --no-compile --env-steps 100
exit $status
