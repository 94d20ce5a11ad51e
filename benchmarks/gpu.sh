#!/usr/bin/env bash
# Every GPU figure of benchmarks/README.md in one run, on a machine with CUDA, PyTorch, SB3 and gymnasium:
# the CUDA tests, then benchmarks/speed.py on the tiny and paper configurations (eager against SB3's SAC,
# torch.compile with CUDA graphs, bf16), and the paper configuration again with TF32 matmuls.
# Written to fit in 10 minutes on an H100 (not yet run on one). Writes markdown and logs to the folder given as $1 (default benchmarks/gpu_results).
#
#     bash benchmarks/gpu.sh /tmp/gpu_results
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/gpu_results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python="${PYTHON:-python3}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
"$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/cuda_tests.txt" || true
"$python" benchmarks/speed.py --config tiny --device cuda --compile-mode reduce-overhead 2>&1 | tee "$out/speed_tiny_cuda.md"
"$python" benchmarks/speed.py --config paper --device cuda --compile-mode reduce-overhead 2>&1 | tee "$out/speed_paper_cuda.md"
"$python" benchmarks/speed.py --config paper --device cuda --matmul-precision high --no-compile --env-steps 100 2>&1 |
  tee "$out/speed_paper_cuda_tf32.md"
