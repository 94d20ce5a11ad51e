"""
Run the learning benchmark: every task × method × seed job, resumable, then the report.

    python -m benchmarks.learning.run --tasks pointmaze --methods expo-o2o expo-online rlpd bc sac \\
        --seeds 0 1 2 --out benchmarks/learning/results --jobs 2

Each job keeps its state in ``<out>/jobs/<task>__<method>__<seed>/``:

- ``rows.csv``: one row per evaluation, appended and flushed as soon as it is measured;
- ``checkpoint_<env_steps>/``: model, replay buffer and ``state.json`` (env steps, wall time), saved after
  every evaluation; written under a temporary name and renamed, so a checkpoint is complete or absent;
- ``done``: the job reached its budget.

Running the same command again skips finished jobs and resumes interrupted ones from their last
checkpoint; a larger ``--steps`` extends finished jobs from their final checkpoint. Then the results of
all jobs under ``<out>`` are aggregated (:mod:`benchmarks.learning.report`).

Several machines share the grid with ``--storage <database URL>`` (:mod:`benchmarks.learning.claims`):
the same command on each machine, and each job is claimed from the database by exactly one worker; a
job whose worker died is claimed again by another one::

    python -m benchmarks.learning.run --tasks pointmaze --seeds 0 1 2 3 4 --jobs 2 \\
        --storage postgresql://user:password@dbhost/benchmarks --sweep pointmaze-5-seeds
"""

import argparse
import csv
import json
import multiprocessing as mp
import os
import shutil
import time
import traceback
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.monitor import Monitor

from benchmarks.learning import claims, report
from benchmarks.learning.methods import METHODS, Method, get_method, load_offline
from benchmarks.learning.tasks import TASKS, Task, get_task
from sb3_expo import EXPO
from sb3_expo.evaluation import evaluate_success_rate

COLUMNS = (
    "task",
    "method",
    "seed",
    "env_steps",
    "success_rate",
    "success_rate_deterministic",
    "return",
    "return_deterministic",
    "wall_s",
)
EVAL_SEED_OFFSET = 10_000
ROWS, DONE, STATE = "rows.csv", "done", "state.json"
CHECKPOINT_PREFIX, CHECKPOINT_TMP = "checkpoint_", "checkpoint.tmp"


@dataclass(frozen=True)
class Job:
    task: str
    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.task}__{self.method}__{self.seed}"

    @classmethod
    def from_name(cls, name: str) -> "Job":
        task, method, seed = name.split("__")
        return cls(task, method, int(seed))


# ------------------------------------------------------------------------------------------ job directory


def read_done(directory: Path) -> int | None:
    """The env steps a finished job reached, or None if it has not finished."""
    path = directory / DONE
    return json.loads(path.read_text())["env_steps"] if path.exists() else None


def latest_checkpoint(directory: Path) -> Path | None:
    """The complete checkpoint with the most env steps (the temporary one of an interrupted save is ignored)."""
    checkpoints = sorted(directory.glob(f"{CHECKPOINT_PREFIX}[0-9]*/{STATE}"))
    return checkpoints[-1].parent if checkpoints else None


def save_checkpoint(directory: Path, model: Any, env_steps: int, wall_s: float) -> None:
    """Model, replay buffer and state into a temporary folder, renamed when complete; older checkpoints are removed."""
    tmp = directory / CHECKPOINT_TMP
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with warnings.catch_warnings():  # the in-memory offline data is attached again by load_checkpoint
        warnings.filterwarnings("ignore", message=".*in-memory OfflineTransitions")
        model.save(tmp / "model.zip")
    model.save_replay_buffer(tmp / "replay_buffer.pkl")
    (tmp / STATE).write_text(json.dumps({"env_steps": env_steps, "wall_s": wall_s}))
    final = directory / f"{CHECKPOINT_PREFIX}{env_steps:09d}"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in directory.glob(f"{CHECKPOINT_PREFIX}[0-9]*"):
        if old != final:
            shutil.rmtree(old)


def load_checkpoint(checkpoint: Path, method: Method, env: Any, device: str, data: Any) -> tuple[Any, dict]:
    """
    The model and its replay buffer as saved. Neither file holds the offline data (it is never pickled),
    so it is attached again here.
    """
    offline = {"offline_dataset": data} if issubclass(method.algo, EXPO) else {}  # EXPO re-attaches it itself
    model = method.algo.load(checkpoint / "model.zip", env=env, device=device, **offline)
    model.load_replay_buffer(checkpoint / "replay_buffer.pkl")
    model.replay_buffer.attach_offline(data)
    return model, json.loads((checkpoint / STATE).read_text())


def append_row(directory: Path, row: dict[str, Any]) -> None:
    """Append one evaluation and flush, so a crash never loses a measured row."""
    path = directory / ROWS
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        file.flush()


def keep_rows_up_to(directory: Path, env_steps: int) -> None:
    """Drop rows measured after the checkpoint a job resumes from: they will be measured again."""
    path = directory / ROWS
    if not path.exists():
        return
    with path.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if int(row["env_steps"]) <= env_steps]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ one job


def evaluate(actor: Any, eval_env: Monitor, task: Task, seed: int) -> dict[str, float]:
    """
    Success rate and mean return (the env's reward, before ``reward_shift``) with the stochastic action
    (the OTF action the paper evaluates) and with ``deterministic=True``. The eval env is reseeded every
    time, so every evaluation of every method of a seed starts from the same episodes.
    """
    metrics = {}
    for deterministic, suffix in ((False, ""), (True, "_deterministic")):
        eval_env.reset(seed=EVAL_SEED_OFFSET + seed)
        metrics[f"success_rate{suffix}"] = evaluate_success_rate(actor, eval_env, task.eval_episodes, deterministic)
        metrics[f"return{suffix}"] = float(np.mean(eval_env.get_episode_rewards()[-task.eval_episodes :]))
    return metrics


def run_job(job: Job, out: Path, device: str = "cpu", steps: int | None = None) -> str:
    """
    Run one job to its budget: start it, resume it from its last checkpoint, or skip it if it is done.

    :param job: task, method and seed
    :param out: the results folder
    :param device: torch device of the model
    :param steps: online env steps, instead of the task's budget
    :return: a one-line summary
    """
    th.set_num_threads(1)
    task, method = get_task(job.task), get_method(job.method)
    directory = out / "jobs" / job.name
    budget = (steps or task.online_steps) if method.learns_online else 0
    done = read_done(directory)
    if done is not None and done >= budget:
        return f"{job.name}: done at {done} env steps, skipped"

    start = time.perf_counter()
    data = load_offline(task)
    env = task.make_env()
    checkpoint = latest_checkpoint(directory)
    if checkpoint is None:  # a fresh start: anything an interrupted first attempt left is stale
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        model = method.make(task, env, job.seed, device, max(budget, task.online_steps), data)
        wall_before = 0.0
    else:
        model, state = load_checkpoint(checkpoint, method, env, device, data)
        wall_before = state["wall_s"]
        keep_rows_up_to(directory, model.num_timesteps)
        (directory / DONE).unlink(missing_ok=True)
    actor, eval_env = method.actor(model), Monitor(task.make_env())

    def record() -> None:
        """Evaluate, append the row, then checkpoint (a row without its checkpoint is dropped on resume)."""
        metrics = evaluate(actor, eval_env, task, job.seed)
        wall_s = round(wall_before + time.perf_counter() - start, 1)
        append_row(directory, {**asdict(job), "env_steps": model.num_timesteps, **metrics, "wall_s": wall_s})
        if method.learns_online:
            save_checkpoint(directory, model, model.num_timesteps, wall_s)

    if checkpoint is None:
        record()  # step 0: after pretraining for expo-o2o and bc, untrained for the others
    while model.num_timesteps < budget:
        next_eval = min(budget, (model.num_timesteps // task.eval_interval + 1) * task.eval_interval)
        model.learn(next_eval - model.num_timesteps, reset_num_timesteps=False)
        record()
    (directory / DONE).write_text(json.dumps({"env_steps": model.num_timesteps}))
    env.close()
    eval_env.close()
    resumed = "" if checkpoint is None else f" (resumed from {checkpoint.name})"
    return f"{job.name}: done at {model.num_timesteps} env steps in {time.perf_counter() - start:.0f} s{resumed}"


# ------------------------------------------------------------------------------------------------ all jobs


def _pin_worker(cores: Any) -> None:
    """Worker start: one core and one torch thread each, so parallel jobs do not fight over cores."""
    try:
        os.sched_setaffinity(0, {cores.get_nowait()})
    except Exception:  # no core left (a replaced worker) or no affinity support: run unpinned
        pass
    th.set_num_threads(1)


def run_jobs(jobs: Sequence[Job], out: Path, device: str = "cpu", steps: int | None = None, n_workers: int = 1) -> int:
    """
    Run the jobs, ``n_workers`` at a time in separate processes (in this one when 1). A failing job is
    reported and the others go on.

    :return: the number of failed jobs
    """
    failures = 0

    def report_result(job: Job, run: Any) -> None:
        nonlocal failures
        try:
            print(run(), flush=True)
        except Exception:
            failures += 1
            print(f"{job.name}: FAILED\n{traceback.format_exc()}", flush=True)

    if n_workers <= 1:
        for job in jobs:
            report_result(job, lambda job=job: run_job(job, out, device, steps))
        return failures
    context = mp.get_context("spawn")  # torch and fork do not mix
    cores = context.Queue()
    available = sorted(os.sched_getaffinity(0))
    for worker in range(n_workers):
        cores.put(available[worker % len(available)])
    with ProcessPoolExecutor(n_workers, mp_context=context, initializer=_pin_worker, initargs=(cores,)) as pool:
        futures = {pool.submit(run_job, job, out, device, steps): job for job in jobs}
        for future in as_completed(futures):
            report_result(futures[future], future.result)
    return failures


def _claim_and_run(
    storage: str, sweep: str, heartbeat_interval: float, out: Path, device: str, steps: int | None
) -> tuple[int, int]:
    """One worker of a shared sweep: claim jobs from the database and run them until none is left."""
    board = claims.JobBoard(storage, sweep, heartbeat_interval)
    th.set_num_threads(1)
    return claims.work(
        board, lambda name: run_job(Job.from_name(name), out, device, steps), log=lambda line: print(line, flush=True)
    )


def run_claimed_jobs(
    jobs: Sequence[Job],
    storage: str,
    sweep: str,
    out: Path,
    device: str = "cpu",
    steps: int | None = None,
    n_workers: int = 1,
    heartbeat_interval: float = claims.DEFAULT_HEARTBEAT_INTERVAL,
) -> int:
    """
    Register the jobs in the shared database, then run ``n_workers`` workers that claim them (this
    process when 1) until none is left, here or on any other machine.

    :return: the number of jobs that failed on this machine
    """
    board = claims.JobBoard(storage, sweep, heartbeat_interval)
    board.add([job.name for job in jobs])
    args = (storage, sweep, heartbeat_interval, out, device, steps)
    if n_workers <= 1:
        failures = _claim_and_run(*args)[1]
    else:
        context = mp.get_context("spawn")
        cores = context.Queue()
        available = sorted(os.sched_getaffinity(0))
        for worker in range(n_workers):
            cores.put(available[worker % len(available)])
        with ProcessPoolExecutor(n_workers, mp_context=context, initializer=_pin_worker, initargs=(cores,)) as pool:
            failures = sum(future.result()[1] for future in [pool.submit(_claim_and_run, *args) for _ in range(n_workers)])
    print(board.table())
    return failures


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["pointmaze"], help=f"registered: {sorted(TASKS)}")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/learning/results"))
    parser.add_argument("--device", default="cpu", help="torch device of every model: cpu, cuda, auto")
    parser.add_argument("--jobs", type=int, default=1, help="jobs in parallel, each in its own process pinned to one core")
    parser.add_argument("--steps", type=int, default=None, help="online env steps per job instead of each task's budget")
    parser.add_argument("--storage", default=None, help="database URL shared by several machines (claims.py)")
    parser.add_argument("--sweep", default="learning", help="name of the job grid in --storage")
    parser.add_argument("--heartbeat-interval", type=float, default=claims.DEFAULT_HEARTBEAT_INTERVAL, help="seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    th.set_num_threads(1)
    tasks = [get_task(name) for name in args.tasks]
    for task in tasks:  # here, once, so that parallel jobs never build the same dataset at the same time
        task.build_dataset()
    # Seed-major order: an interrupted benchmark has every method of the first seeds rather than all seeds of some methods.
    jobs = [Job(task.name, method, seed) for task in tasks for seed in args.seeds for method in args.methods]
    if args.storage is not None:
        failures = run_claimed_jobs(
            jobs, args.storage, args.sweep, args.out, args.device, args.steps, args.jobs, args.heartbeat_interval
        )
    else:
        failures = run_jobs(jobs, args.out, args.device, args.steps, args.jobs)
    report.write_report(args.out)
    if failures:
        print(f"{failures} of {len(jobs)} jobs failed; run the same command again to retry them")
    return int(failures > 0)


if __name__ == "__main__":
    raise SystemExit(main())
