"""
Evaluate a grid's finished jobs again with today's evaluation code, at step 0 and at the end, when the evaluation
changed while the grid ran (deterministic ``predict``, 2026-12-08: each state's own fixed draws instead of draws
shared by every state).

- Step 0: the job's starting model is rebuilt by its method's maker, seeded as the job was (pretraining
  included), then evaluated. Training is bit-identical across the change (``benchmarks/fingerprint.py``), so this
  is the model the job evaluated at step 0.
- The end: the job's final checkpoint (a finished job keeps it), evaluated.

Each job gets ``reevaluated.csv`` (the rows of ``rows.csv``'s format at those two steps); ``<out>/reevaluated.md``
gets the summary of :mod:`benchmarks.learning.report` over them (step 0, final, whether fine-tuning holds, against
RLPD: the area columns only join the two points).

    MINARI_DATASETS_PATH=... python -m benchmarks.learning.reevaluate --out benchmarks/learning/results/suite \
        --tasks pointmaze --methods expo-o2o rlpd
"""

import argparse
import csv
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.monitor import Monitor

from benchmarks.learning import report
from benchmarks.learning.methods import get_method, load_offline
from benchmarks.learning.run import COLUMNS, Job, evaluate, latest_checkpoint, load_checkpoint, read_done
from benchmarks.learning.tasks import TASKS, get_task

REEVALUATED = "reevaluated.csv"


def reevaluate_job(directory: Path, device: str = "cpu") -> list[dict]:
    """The job's step-0 and final rows, evaluated now; written to ``<job>/reevaluated.csv``."""
    th.set_num_threads(1)
    job = Job.from_name(directory.name)
    task, method = get_task(job.task), get_method(job.method)
    data, env = load_offline(task), task.make_env()

    def evaluated(model: Any) -> dict:
        metrics = evaluate(method.actor(model), Monitor(task.make_env()), task, job.seed)
        return {**asdict(job), "env_steps": model.num_timesteps, **metrics, "wall_s": 0.0}

    # Step 0 first, right after its model is built, as run_job does: loading a checkpoint reseeds the global random
    # generators, and the stochastic evaluation draws from them
    rows = [evaluated(method.make(task, env, job.seed, device, task.online_steps, data))]
    checkpoint = latest_checkpoint(directory)
    if method.learns_online and checkpoint is not None:
        rows.append(evaluated(load_checkpoint(checkpoint, method, env, device, data)[0]))
    with (directory / REEVALUATED).open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def finished_jobs(out: Path, tasks: list[str] | None, methods: list[str] | None) -> list[Path]:
    jobs = [path for path in sorted((out / "jobs").iterdir()) if read_done(path) is not None]
    return [
        path for path in jobs
        if (tasks is None or Job.from_name(path.name).task in tasks)
        and (methods is None or Job.from_name(path.name).method in methods)
    ]  # fmt: skip


def write_summary(out: Path) -> None:
    """``<out>/reevaluated.md``: the report's summary over every job's ``reevaluated.csv``."""
    rows = report.read_rows(out, REEVALUATED)
    split = {name: task.split for name, task in TASKS.items()}
    text = [
        "# The grid's finished jobs, evaluated again at step 0 and at the end (benchmarks/learning/reevaluate.py)",
        "",
        "Two points per job, so the AUC column only joins step 0 and the end; the curves are in results.md.",
        "",
        *report.summary(report.group(rows), split),
    ]
    (out / "reevaluated.md").write_text("\n".join(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/learning/results/suite"))
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-done", action="store_true", help="keep the jobs that have a reevaluated.csv")
    args = parser.parse_args()
    for directory in finished_jobs(args.out, args.tasks, args.methods):
        if args.skip_done and (directory / REEVALUATED).exists():
            continue
        rows = reevaluate_job(directory, args.device)
        figures = ", ".join(
            f"{row['env_steps']}: {row['success_rate']:.2f} / {row['success_rate_deterministic']:.2f}" for row in rows
        )
        print(f"{directory.name}: {figures}", flush=True)
    write_summary(args.out)


if __name__ == "__main__":
    main()
