"""The learning benchmark (benchmarks/learning): CSV rows, skipping finished jobs, resuming, the report."""

import csv
import json

import pytest
import torch as th

from benchmarks.learning import methods, report, run
from benchmarks.learning.tasks import TASKS, Task, register_task
from sb3_expo import EXPO
from sb3_expo.tasks.pointmaze import build_pointmaze_dataset, make_pointmaze_env

TASK = "tiny-pointmaze"
DATASET_ID = "sb3_expo/test-learning-suite-v0"
ALL_METHODS = ["expo-o2o", "expo-paper", "expo-tuned", "expo-online", "rlpd", "rlpd-delayed", "bc", "sac"]


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    """PointMaze with 30-step episodes, 2 recorded episodes of data, tiny networks: 100 env steps, 2 evaluations."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
        task = register_task(
            Task(
                name=TASK,
                make_env=lambda: make_pointmaze_env(max_episode_steps=30),
                dataset_id=DATASET_ID,
                build_dataset=lambda: build_pointmaze_dataset(DATASET_ID, n_episodes=2),
                reward_shift=-1.0,
                online_steps=100,
                pretrain_steps=10,
                eval_interval=50,
                eval_episodes=2,
                net_arch=[16, 16],
                shared=dict(learning_starts=0, batch_size=16, gradient_steps=1),
                expo=dict(
                    policy_delay=1,
                    n_critics=2,
                    n_base_samples=2,
                    n_edit_samples=1,
                    diffusion_steps=3,
                    policy_kwargs=dict(denoiser_width=16, denoiser_blocks=1),
                ),
                tuned=dict(tau=0.02, edit_scale=0.5, critic_steps=5),
            )
        )
        task.build_dataset()
        yield task
    TASKS.pop(TASK)


def read_csv(path):
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def job_dir(out, method, seed=0):
    return out / "jobs" / f"{TASK}__{method}__{seed}"


@pytest.mark.slow  # every method of the suite end to end
def test_runs_every_method_writes_the_report_and_never_reruns_a_finished_job(tiny_task, tmp_path):
    out = tmp_path / "results"
    argv = ["--tasks", TASK, "--methods", *ALL_METHODS, "--seeds", "0", "--out", str(out)]
    assert run.main(argv) == 0

    for method in ALL_METHODS:
        rows = read_csv(job_dir(out, method) / "rows.csv")
        assert list(rows[0]) == list(run.COLUMNS)
        expected_steps = [0] if method == "bc" else [0, 50, 100]  # bc never learns online: evaluated at step 0 only
        assert [int(row["env_steps"]) for row in rows] == expected_steps
        assert all(0 <= float(row["success_rate"]) <= 1 and float(row["wall_s"]) > 0 for row in rows)
    results = read_csv(out / "results.csv")
    assert list(results[0]) == list(run.COLUMNS) and len(results) == (len(ALL_METHODS) - 1) * 3 + 1
    assert (out / f"{TASK}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "results.md").read_text()
    assert f"## {TASK}" in table and "| expo-o2o |" in table and report.FLAT_MARK in table

    # A second run finds every job done: nothing is rebuilt, evaluated or rewritten.
    stamps = {path: path.stat().st_mtime_ns for path in out.glob("jobs/*/*") if path.is_file()}
    assert run.run_job(run.Job(TASK, "sac", 0), out).endswith("skipped")
    assert run.main(argv) == 0
    assert {path: path.stat().st_mtime_ns for path in out.glob("jobs/*/*") if path.is_file()} == stamps


@pytest.mark.parametrize("method", ["expo-o2o", "rlpd", "sac"])
def test_an_interrupted_job_resumes_from_its_last_checkpoint(tiny_task, tmp_path, monkeypatch, method):
    out, job = tmp_path / "results", run.Job(TASK, method, 0)
    run.run_job(job, out, steps=50)
    directory = job_dir(out, method)
    before = read_csv(directory / "rows.csv")
    assert [int(row["env_steps"]) for row in before] == [0, 50]
    assert json.loads((directory / "done").read_text()) == {"env_steps": 50}

    # Interrupted after measuring step 100 but before its checkpoint: that row is stale and the job is not done.
    run.append_row(directory, {**before[-1], "env_steps": 100, "success_rate": 7.0})
    (directory / "done").unlink()
    # Resuming must load the checkpoint: building the model again would fail.
    monkeypatch.setitem(run.METHODS, method, methods.Method(method, methods.METHODS[method].algo, make=None))
    message = run.run_job(job, out, steps=100)

    assert "resumed from checkpoint_000000050" in message
    after = read_csv(directory / "rows.csv")
    assert after[:2] == before  # rows up to the checkpoint are kept as they were
    assert int(after[2]["env_steps"]) == 100 and float(after[2]["success_rate"]) <= 1  # re-measured, once
    assert float(after[2]["wall_s"]) > float(before[-1]["wall_s"])  # wall time accumulates across sessions
    assert [path.name for path in directory.glob("checkpoint_*")] == ["checkpoint_000000100"]
    assert json.loads((directory / "checkpoint_000000100" / "state.json").read_text())["env_steps"] == 100
    assert json.loads((directory / "done").read_text()) == {"env_steps": 100}


def write_job(out, method, seed, rows):
    directory = job_dir(out, method, seed)
    directory.mkdir(parents=True)
    for steps, success in rows:
        row = dict.fromkeys(run.COLUMNS, 0.5)
        row.update(task=TASK, method=method, seed=seed, env_steps=steps, success_rate=success, wall_s=10.0 * (seed + 1))
        run.append_row(directory, row)


def test_report_table_has_mean_std_per_seed_values_and_flat_methods(tmp_path):
    write_job(tmp_path, "expo-o2o", 0, [(0, 0.2), (1000, 0.4)])
    write_job(tmp_path, "expo-o2o", 1, [(0, 0.4), (1000, 0.8)])
    write_job(tmp_path, "bc", 0, [(0, 0.3)])
    write_job(tmp_path, "bc", 1, [(0, 0.1)])
    report.write_report(tmp_path)

    table = (tmp_path / "results.md").read_text()
    assert "| method | 0 steps | 1000 steps | final wall (s) |" in table
    assert "| expo-o2o | 0.30 ± 0.10 (0.20, 0.40) | 0.60 ± 0.20 (0.40, 0.80) | 15 ± 5 |" in table
    assert f"| bc | 0.20 ± 0.10 (0.30, 0.10) | 0.20 ± 0.10 (0.30, 0.10){report.FLAT_MARK} | 15 ± 5 |" in table
    assert (tmp_path / f"{TASK}.png").stat().st_size > 0
    assert len(read_csv(tmp_path / "results.csv")) == 6


def test_summary_checks_that_fine_tuning_holds_and_compares_with_rlpd():
    def rows(method, seed, values):
        return [
            {"task": "t", "method": method, "seed": seed, "env_steps": step, "success_rate": value,
             "success_rate_deterministic": value, "wall_s": 1.0}
            for step, value in zip((0, 1000, 2000), values)
        ]  # fmt: skip

    results = report.group(
        rows("expo-o2o", 0, (0.8, 0.9, 0.9)) + rows("expo-o2o", 1, (0.8, 0.5, 0.7))  # seed 1 ends 0.1 below its start
        + rows("expo-paper", 0, (0.8, 0.2, 0.0)) + rows("rlpd", 0, (0.0, 0.6, 0.6))
    )  # fmt: skip
    assert report.final_and_auc(results["t"]["expo-o2o"][0], "success_rate") == pytest.approx((0.8, 0.9, 0.875))
    lines = {line.split(" | ")[2]: line for line in report.summary(results, {"t": "held-out"}) if line.startswith("| t |")}
    assert lines["expo-o2o"].endswith("| 0.80 / 0.80 | 0.80 / 0.80 | 0.75 / 0.75 | yes | ahead at 2000 |")
    assert "| **no** | behind at 2000 |" in lines["expo-paper"]  # 0.8 -> 0.0, and below RLPD's 0.6 and its area
    # An unfinished RLPD job: the comparison stops at its last step (expo-paper is ahead there, 0.2 > 0.0 at 1000)
    cut = report.group(rows("expo-paper", 0, (0.8, 0.2, 0.0)) + rows("rlpd", 0, (0.0, 0.0, 0.6))[:2])
    line = next(line for line in report.summary(cut, {"t": "held-out"}) if "expo-paper" in line)
    assert line.endswith("| ahead at 1000 |")
    # Both at 0 everywhere (a task nobody solves yet): tied, not behind
    zeros = report.group(rows("expo-o2o", 0, (0.0, 0.0, 0.0)) + rows("rlpd", 0, (0.0, 0.0, 0.0)))
    line = next(line for line in report.summary(zeros, {"t": "tuning"}) if "expo-o2o" in line)
    assert line.endswith("| tied at 2000 |")


def test_reevaluation_rebuilds_the_jobs_step_0_model_and_reads_its_final_checkpoint(tiny_task, tmp_path):
    """Same code, same evaluation: the rebuilt step 0 and the final checkpoint give the rows the job wrote."""
    from benchmarks.learning import reevaluate

    run.run_job(run.Job(TASK, "expo-o2o", 0), tmp_path)
    directory = job_dir(tmp_path, "expo-o2o")
    written = read_csv(directory / "rows.csv")
    again = reevaluate.reevaluate_job(directory)
    assert [row["env_steps"] for row in again] == [0, 100]
    for step, row in zip((0, -1), again, strict=True):
        for key in ("success_rate", "success_rate_deterministic", "return", "return_deterministic"):
            assert float(written[step][key]) == pytest.approx(row[key]), key
    reevaluate.write_summary(tmp_path)
    assert f"| {TASK} |" in (tmp_path / "reevaluated.md").read_text()

    # The rebuilt step-0 model is the job's own, weight for weight (a job stopped before its first online step
    # keeps it as its checkpoint)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EXPO, "learn", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            run.run_job(run.Job(TASK, "expo-o2o", 1), tmp_path)
    task, method = tiny_task, methods.get_method("expo-o2o")
    data, env = methods.load_offline(task), task.make_env()
    saved, _ = run.load_checkpoint(run.latest_checkpoint(job_dir(tmp_path, "expo-o2o", 1)), method, env, "cpu", data)
    rebuilt = method.make(task, env, 1, "cpu", task.online_steps, data)
    for (name, value), rebuilt_value in zip(saved.policy.state_dict().items(), rebuilt.policy.state_dict().values()):
        assert th.equal(value, rebuilt_value), name
