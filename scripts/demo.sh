#!/usr/bin/env bash
# The main job: install everything, then offline-to-online EXPO on the PointMaze task with a dataset
# built locally (build the dataset, pretrain, fine-tune online, print the success rates, TensorBoard logs).
# Extra arguments go to examples/offline_to_online_pointmaze.py (e.g. --online-steps 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1  # the dataset is built locally: Minari never needs the network here
.venv/bin/python examples/offline_to_online_pointmaze.py "$@"
