"""
Sweeps past one machine: ``sb3-expo train -optimize --storage`` workers sharing one Optuna study, and the
learning benchmark's jobs claimed from one database (benchmarks/learning/claims.py).

The multi-worker tests run against a real PostgreSQL server that they start themselves on a temporary
directory and a free localhost port (tests/postgres_server.py), and skip only where the PostgreSQL
binaries are absent. The rest runs on SQLite files.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")
pytest.importorskip("rl_zoo3")
sqlalchemy = pytest.importorskip("sqlalchemy")

from optuna.trial import TrialState  # noqa: E402
from postgres_server import missing_binaries, postgres_server  # noqa: E402

from benchmarks.learning import claims, report, run  # noqa: E402
from benchmarks.learning.tasks import TASKS, Task  # noqa: E402
from sb3_expo.zoo import cli, storage, sweeps  # noqa: E402
from sb3_expo.zoo.experiment import ExpoExperimentManager  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "learning_starts:100",
    "batch_size:16",
    "n_critics:2",
    "diffusion_steps:2",
    "buffer_size:2000",
    "policy_kwargs:dict(net_arch=[16],denoiser_width=16,denoiser_blocks=1)",
]


def subprocess_env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def postgres_url():
    reason = missing_binaries()
    if reason is not None:
        pytest.skip(reason)
    pytest.importorskip("psycopg", reason="the PostgreSQL driver (the `sweeps` extra) is not installed")
    with postgres_server() as url:
        yield url


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def finish(processes, timeout):
    """Wait for every process; return their outputs (killing the ones still running at the deadline)."""
    deadline, outputs = time.monotonic() + timeout, []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            process.kill()
            outputs.append(process.communicate()[0])
            raise AssertionError(f"worker {process.pid} still running after {timeout} s:\n{outputs[-1][-3000:]}") from None
    return outputs


# --------------------------------------------------------------------------------- Optuna studies


def optimize_worker(url, study, folder, max_trials):
    command = [
        sys.executable, "-m", "sb3_expo.zoo.cli", "train", "--env", "Pendulum-v1", "-optimize",
        "--storage", url, "--study-name", study, "--max-total-trials", str(max_trials), "--heartbeat-interval", "1",
        "-n", "400", "--n-evaluations", "2", "--eval-episodes", "1", "--n-startup-trials", "2", "--no-optim-plots",
        "--num-threads", "1", "--seed", "0", "-f", str(folder), "-params", *TINY,
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=folder.parent, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow  # three worker processes and a database
def test_three_workers_share_one_postgres_study_and_survive_a_killed_worker(postgres_url, tmp_path):
    """
    Three independently started ``sb3-expo train -optimize`` processes join one study; one is killed
    (SIGKILL) in the middle of a trial. The other two finish the study: its trial is marked FAIL once
    its heartbeat is stale, its parameters are run again, and the total is reached.
    """
    name, total = "pendulum-three-workers", 6
    workers = [optimize_worker(postgres_url, name, tmp_path / f"worker{i}", total) for i in range(3)]
    victim = workers[2]

    def victim_trial():
        try:
            study = sweeps.load_study(postgres_url, name)
        except KeyError:  # not created yet
            return None
        running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.user_attrs.get("worker")]
        # Mid-trial: its hyperparameters sampled (killed before that, the retry would have none to repeat).
        return next((t for t in running if t.user_attrs["worker"].endswith(f":{victim.pid}") and t.params), None)

    killed = wait_until(victim_trial, 120, "a trial of the third worker")
    victim.send_signal(signal.SIGKILL)
    outputs = finish(workers[:2], 240)
    victim.communicate()
    for process, output in zip(workers[:2], outputs):
        assert process.returncode == 0, output[-3000:]

    trials = sweeps.load_study(postgres_url, name).get_trials(deepcopy=False)
    numbers = [trial.number for trial in trials]
    assert sorted(numbers) == list(range(len(trials)))  # every trial has its own number
    by_state = {state: [t for t in trials if t.state == state] for state in TrialState}
    finished = by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED]
    # The total, or up to (workers - 1) more when two workers start their last trial at the same moment.
    assert total <= len(finished) <= total + 2, sweeps.trials_table(sweeps.load_study(postgres_url, name))
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING]
    [dead] = by_state[TrialState.FAIL]
    assert dead.number == killed.number and dead.user_attrs["worker"].endswith(f":{victim.pid}")
    [retried] = [t for t in finished if t.system_attrs.get("failed_trial") == dead.number]
    assert retried.params == dead.params and not retried.user_attrs["worker"].endswith(f":{victim.pid}")
    assert by_state[TrialState.COMPLETE]
    workers_seen = {t.user_attrs["worker"] for t in finished}
    assert {f":{p.pid}" for p in workers[:2]} <= {w[w.index(":") :] for w in workers_seen}

    # The table and the export read the same study.
    table = subprocess.run(
        [sys.executable, "-m", "sb3_expo.zoo.cli", "trials", "--storage", postgres_url, "--study-name", name],
        env=subprocess_env(), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"| {dead.number} | FAIL |" in table and f"{len(trials)} trials:" in table
    print(table)
    out = tmp_path / "best.yml"
    cli.main(["best-params", "--storage", postgres_url, "--study-name", name, "-o", str(out)])
    entry = yaml.safe_load(out.read_text())["Pendulum-v1"]
    best = sweeps.load_study(postgres_url, name).best_trial.params
    assert entry["edit_scale"] == best["edit_scale"] and entry["gradient_steps"] == entry["policy_delay"] == best["utd"]
    assert entry["policy"] == "MlpPolicy"  # the rest of the shipped entry is kept


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_dead_workers_trial_is_failed_queued_again_and_waited_for(tmp_path):
    """SharedStudyMaxTrials does not stop the study while a dead worker's trial still counts as running."""
    storage = sweeps.shared_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    stops = []
    study.stop = lambda: stops.append(True)  # Study.stop only works inside optimize()
    study.enqueue_trial({"x": 0.5})
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(dead._trial_id)  # a worker that beat once, then died
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 1.0)
    counted = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)

    start = time.monotonic()
    sweeps.SharedStudyMaxTrials(2, states=counted, poll_interval=0.1)(study, study.trials[-1])
    assert 1.5 < time.monotonic() - start < 30  # waited for the grace period (2 heartbeat intervals)
    states = [trial.state for trial in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.WAITING] and not stops  # the retry is next
    retry = study.get_trials(deepcopy=False)[-1]
    assert retry.system_attrs["failed_trial"] == dead.number and retry.params == {"x": 0.5}

    study.tell(study.ask(), 0.5)  # the retry ran: the total is reached and nothing runs, so the study stops
    sweeps.SharedStudyMaxTrials(2, states=counted, poll_interval=0.1)(study, study.trials[-1])
    assert stops == [True]


def test_a_nan_trial_is_recorded_as_failed_and_the_worker_goes_on(tmp_path, monkeypatch):
    manager = ExpoExperimentManager(argparse.Namespace(), "expo", "Pendulum-v1", str(tmp_path), n_timesteps=-1)
    calls = []

    def objective(self, trial):
        calls.append(trial.number)
        if trial.number == 0:
            raise FloatingPointError("NaN in the critic loss")
        return float(trial.number)

    monkeypatch.setattr("rl_zoo3.exp_manager.ExperimentManager.objective", objective)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", direction="maximize")
    study.optimize(manager.objective, n_trials=3)
    assert calls == [0, 1, 2]
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert "FloatingPointError" in study.trials[0].user_attrs["error"]
    assert all(t.user_attrs["worker"] == storage.worker_name() for t in study.trials)


def test_heartbeat_option_is_taken_before_rl_zoo_parses(monkeypatch):
    monkeypatch.setattr(ExpoExperimentManager, "heartbeat_interval", sweeps.DEFAULT_HEARTBEAT_INTERVAL)
    assert cli._take_heartbeat_interval(["-optimize", "--heartbeat-interval", "7", "-n", "5"]) == ["-optimize", "-n", "5"]
    assert ExpoExperimentManager.heartbeat_interval == 7
    assert cli._take_heartbeat_interval(["--heartbeat-interval=3"]) == [] and ExpoExperimentManager.heartbeat_interval == 3
    with pytest.raises(SystemExit, match="whole number"):
        cli._take_heartbeat_interval(["--heartbeat-interval", "0"])
    assert storage.database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert storage.database_url("sqlite:///a.db") == "sqlite:///a.db"


def test_best_params_export_is_a_yaml_entry_rl_zoo_reads(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="pointmaze", direction="maximize")
    with pytest.raises(SystemExit, match="no complete trial"):
        cli.main(["best-params", "--storage", url, "--study-name", "pointmaze", "--env", "Pendulum-v1"])
    study.set_user_attr(sweeps.ENV_ATTR, "sb3_expo/PointMazeUMazeFixed-v0")
    space = {
        "edit_scale": optuna.distributions.CategoricalDistribution([0.1, 0.3]),
        "n_base_samples": optuna.distributions.CategoricalDistribution([4, 8]),
        "n_edit_samples": optuna.distributions.CategoricalDistribution([8, 16]),
        "utd": optuna.distributions.CategoricalDistribution([2, 5]),
    }
    for value, state, params in (
        (0.2, TrialState.COMPLETE, dict(edit_scale=0.1, n_base_samples=4, n_edit_samples=8, utd=5)),
        (0.1, TrialState.PRUNED, dict(edit_scale=0.3, n_base_samples=8, n_edit_samples=16, utd=2)),
        (-5.0, TrialState.COMPLETE, dict(edit_scale=0.3, n_base_samples=8, n_edit_samples=8, utd=2)),
    ):
        study.add_trial(optuna.trial.create_trial(state=state, value=value, params=params, distributions=space))
    out = tmp_path / "best.yml"
    cli.main(["best-params", "--storage", url, "--study-name", "pointmaze", "-o", str(out)])  # env: from the study
    text = out.read_text()
    assert text.startswith("# Best trial 0 of study 'pointmaze' (value 0.2)")
    entry = yaml.safe_load(text)["sb3_expo/PointMazeUMazeFixed-v0"]
    assert entry["gradient_steps"] == entry["policy_delay"] == 5 and "utd" not in entry
    assert entry["edit_scale"] == 0.1 and entry["n_base_samples"] == 4 and entry["n_edit_samples"] == 4  # K <= N
    assert entry["offline_dataset"] == "sb3_expo/pointmaze-umaze-mixed-v1"  # the rest of the shipped entry is kept
    # rl-zoo reads the exported file as its -conf.
    manager = ExpoExperimentManager(
        argparse.Namespace(), "expo", "sb3_expo/PointMazeUMazeFixed-v0", str(tmp_path), config=str(out), n_timesteps=-1
    )
    monkeypatch.setattr("sb3_expo.zoo.experiment.prepare_offline_dataset", lambda dataset: None)
    hyperparams, _ = manager.read_hyperparameters()
    assert hyperparams["edit_scale"] == 0.1 and hyperparams["gradient_steps"] == 5
    cli.main(["trials", "--storage", url, "--study-name", "pointmaze"])
    table = capsys.readouterr().out
    assert "| 1 | PRUNED | 0.1 |" in table and "3 trials: 2 complete, 1 pruned" in table


# ------------------------------------------------------------------------------ benchmark job claims

JOB_WORKER = """
import os, sys, time
from pathlib import Path
from benchmarks.learning import claims

url, log, slow_job = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
board = claims.JobBoard(url, sweep="test", heartbeat_interval=0.5, grace_period=2)

def run(name):
    with log.open("a") as f:
        f.write(f"start {name} {os.getpid()}\\n")
    marker = log.parent / "slow-job-started"
    if name == slow_job and not marker.exists():  # the first attempt hangs until it is killed
        marker.write_text(str(os.getpid()))
        time.sleep(600)
    time.sleep(0.3)
    with log.open("a") as f:
        f.write(f"done {name} {os.getpid()}\\n")
    return f"{name}: ok"

board.add([f"job{i:02d}" for i in range(12)])
print(claims.work(board, run))
"""


def test_benchmark_jobs_are_claimed_once_and_a_killed_workers_job_is_taken_again(postgres_url, tmp_path):
    script, log = tmp_path / "worker.py", tmp_path / "jobs.log"
    script.write_text(JOB_WORKER)
    command = [sys.executable, str(script), postgres_url, str(log), "job03"]
    output = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = [subprocess.Popen(command, env=subprocess_env(), **output) for _ in range(3)]
    marker = tmp_path / "slow-job-started"
    wait_until(marker.exists, 60, "the slow job to start")
    victim_pid = int(wait_until(lambda: marker.read_text(), 10, "the pid of the slow job"))
    victim = next(process for process in workers if process.pid == victim_pid)
    victim.send_signal(signal.SIGKILL)
    survivors = [process for process in workers if process is not victim]
    outputs = finish(survivors, 120)
    victim.communicate()
    assert all(process.returncode == 0 for process in survivors), outputs

    lines = [line.split() for line in log.read_text().splitlines()]
    done = [name for kind, name, _ in lines if kind == "done"]
    started = [name for kind, name, _ in lines if kind == "start"]
    assert sorted(done) == [f"job{i:02d}" for i in range(12)]  # every job ran to the end exactly once
    assert sorted(started) == sorted([*done, "job03"])  # only the killed worker's job was started twice
    rows = {row["name"]: row for row in claims.JobBoard(postgres_url, sweep="test").rows()}
    assert {row["state"] for row in rows.values()} == {claims.DONE}
    assert rows["job03"]["attempts"] == 2 and not rows["job03"]["worker"].endswith(f":{victim_pid}")
    assert all(row["attempts"] == 1 for name, row in rows.items() if name != "job03")


def test_run_py_storage_registers_claims_and_skips_done_jobs(tmp_path, monkeypatch):
    """``run.py --storage`` on an SQLite file, with the jobs themselves replaced by a stub."""
    ran = []
    monkeypatch.setattr(run, "run_job", lambda job, out, device, steps: ran.append(job) or f"{job.name}: ok")
    monkeypatch.setattr(report, "write_report", lambda out: None)
    monkeypatch.setitem(TASKS, "stub", Task("stub", make_env=None, dataset_id="none", build_dataset=lambda: None))
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    common = ["--tasks", "stub", "--methods", "bc", "sac", "--out", str(tmp_path), "--storage", url]
    argv = [*common, "--seeds", "0", "1"]
    assert run.main(argv) == 0
    assert [job.name for job in ran] == ["stub__bc__0", "stub__sac__0", "stub__bc__1", "stub__sac__1"]
    assert run.main(argv) == 0 and len(ran) == 4  # every job is done in the database: nothing runs again

    def failing(job, out, device, steps):
        raise RuntimeError("boom")

    monkeypatch.setattr(run, "run_job", failing)
    assert run.main([*common, "--seeds", "2"]) == 1
    board = claims.JobBoard(url, sweep="learning")
    states = {row["name"]: (row["state"], row["message"]) for row in board.rows()}
    assert states["stub__bc__2"][0] == claims.FAILED and "boom" in states["stub__bc__2"][1]
    assert "| stub__sac__1 | done | 1 |" in board.table()


def test_job_board_claims_in_order_and_never_twice(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    first, second = claims.JobBoard(url, worker="a"), claims.JobBoard(url, worker="b", heartbeat_interval=1, grace_period=0.5)
    assert first.add(["x", "y"]) == 2 and second.add(["x", "y"]) == 0
    claim_x, claim_y = first.claim(), second.claim()
    assert (claim_x.name, claim_y.name) == ("x", "y") and second.claim() is None
    assert second.finish(claim_y, claims.DONE, "y: ok")
    time.sleep(0.6)  # x's heartbeat is stale for `second`: it takes x over, and `first` can no longer record it
    taken = second.claim()
    assert taken.name == "x" and taken.attempt == 2
    assert not first.beat(claim_x) and not first.finish(claim_x, claims.DONE)
    assert second.finish(taken, claims.DONE) and second.claim() is None
