"""
How many Euler steps the flow base needs: imitation alone (the base, one sample per state, no critic), DDPM T = 10
against the flow sampled with 1, 2, 4 and 8 steps, on the learning suite's tasks and data; and the time one
``train()`` call of each takes at the task's size. The flow is trained once per seed (its field does not depend on
the step count it is sampled with), the DDPM once per seed.

    MINARI_DATASETS_PATH=... python -m benchmarks.flow_steps --tasks pointmaze fetchpush --seeds 0 1 2

Prints one line per (task, seed, base, steps) and appends it to ``--out`` (JSON lines).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.monitor import Monitor

from benchmarks.learning.methods import load_offline, make_expo
from benchmarks.learning.run import evaluate
from benchmarks.learning.tasks import get_task
from sb3_expo.evaluation import BasePolicyActor

FLOW_STEPS = (1, 2, 4, 8)


def train_time(model, calls: int = 20) -> float:
    """Median seconds of one ``train()`` call (UTD block) on the offline data, after 3 warm-up calls."""
    utd, batch = model.gradient_steps, model.batch_size
    times = []
    for call in range(calls + 3):
        start = time.perf_counter()
        model.train(utd, batch)
        if call >= 3:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(task_name: str, seed: int, base: str, out: Path) -> None:
    task = get_task(task_name)
    data = load_offline(task)
    env = task.make_env()
    settings = {"policy_kwargs": {"base_policy": base}, "compile_mode": None}
    if base == "ddpm":
        settings["diffusion_steps"] = 10
    model = make_expo(task, env, seed, "cpu", 1000, data, **settings)
    model.pretrain(task.pretrain_steps, critic_steps=0)
    rows = []
    for steps in FLOW_STEPS if base == "flow" else (10,):  # every evaluation first: timing trains the model on
        model.base.n_steps = model.base_ema.n_steps = steps
        metrics = evaluate(BasePolicyActor(model), Monitor(task.make_env()), task, seed)
        rows.append(dict(task=task_name, seed=seed, base=base, steps=steps, success=metrics["success_rate"]))
    for row in rows:
        model.base.n_steps = model.base_ema.n_steps = row["steps"]
        row["train_s"] = train_time(model) if seed == 0 else None
        print(json.dumps(row), flush=True)
        with out.open("a") as file:
            file.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["pointmaze"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/flow_steps.jsonl"))
    args = parser.parse_args()
    th.set_num_threads(1)
    for task_name in args.tasks:
        for seed in args.seeds:
            for base in ("ddpm", "flow"):
                measure(task_name, seed, base, args.out)


if __name__ == "__main__":
    main()
