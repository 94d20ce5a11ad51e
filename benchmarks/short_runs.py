"""Should ``compile_mode="auto"`` stay the default on a CPU for short runs? Wall time of ``learn()`` against env steps.

Each mode runs in a fresh process: eager (``compile_mode=None``), ``"auto"`` with an empty inductor cache (what a new
machine pays: the first call compiles every graph) and ``"auto"`` again with the cache the cold run filled (what every
later process on that machine pays). Each process records the wall time since the model was built at a few env-step
marks, so one run gives the break-even point: the first mark where "auto" has caught up with eager.

    taskset -c 1 python benchmarks/short_runs.py --steps 300 1000 3000 --out benchmarks/results/short_runs.jsonl

The task is Pendulum-v1 at the CPU-sized settings of the demo (UTD 2, batch 128, 5 critics, N = K = 4, 64-wide
networks); at the paper's settings an env step costs seconds on a CPU, where compilation is paid back at once.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pendulum_learning import SMALL_CONFIG

# The demo's CPU sizes (pendulum_learning.py's), with a short random warm-up so that 300 env steps already train.
CPU_SIZED = {**SMALL_CONFIG, "learning_starts": 100}


def run_one(compile_mode: str | None, marks: list[int], seed: int) -> dict:
    """Build EXPO and learn up to the last mark, recording the wall time since the start of the process's work."""
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback

    from sb3_expo import EXPO

    th.set_num_threads(1)
    start = time.perf_counter()
    times: dict[int, float] = {}

    class Marks(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps in marks:
                times[self.num_timesteps] = round(time.perf_counter() - start, 2)
            return True

    model = EXPO("MlpPolicy", "Pendulum-v1", compile_mode=compile_mode, seed=seed, **CPU_SIZED)
    model.learn(max(marks), callback=Marks())
    return {"resolved_compile_mode": model.resolved_compile_mode, "seconds_at": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[300, 1000, 3000], help="env-step marks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="append the rows to this .jsonl file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    marks = sorted(args.steps)
    if args.child is not None:  # one measurement, in its own process
        print(json.dumps(run_one(None if args.child == "none" else args.child, marks, args.seed)))
        return
    cache = tempfile.mkdtemp(prefix="inductor-cache-")
    rows = []
    for label, mode in (("eager", "none"), ("auto, cold cache", "auto"), ("auto, warm cache", "auto")):
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, __file__, "--child", mode, "--seed", str(args.seed), "--steps", *map(str, marks)]
        output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        row = {"date": datetime.date.today().isoformat(), "run": label, **result}
        rows.append(row)
        print(json.dumps(row), flush=True)
    eager = rows[0]["seconds_at"]
    for row in rows[1:]:
        ratios = {mark: round(row["seconds_at"][mark] / eager[mark], 2) for mark in eager}
        print(f"{row['run']}: wall time / eager at env steps {ratios}")
    if args.out is not None:
        with args.out.open("a") as file:
            file.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
