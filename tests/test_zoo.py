"""
The rl-zoo integration: the shipped YAML builds an EXPO model for every entry, and the ``sb3-expo``
command trains (model zip, evaluations, TensorBoard), plays and runs a one-trial ``-optimize`` on the
PointMaze demo task. The command runs in subprocesses: importing rl_zoo3 patches gymnasium.
"""

import argparse
import importlib.metadata
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import yaml

pytest.importorskip("rl_zoo3")
pytest.importorskip("gymnasium_robotics")
pytest.importorskip("minari")
optuna = pytest.importorskip("optuna")

from sb3_expo import EXPO  # noqa: E402
from sb3_expo.tasks import ANTMAZE_TASKS, LOCAL_DATASETS, ROBOMIMIC_OBS_KEYS, ROBOMIMIC_TASKS  # noqa: E402
from sb3_expo.tasks.pointmaze import POINTMAZE_DATASET_ID, build_pointmaze_dataset  # noqa: E402
from sb3_expo.zoo import DEFAULT_HYPERPARAMS  # noqa: E402
from sb3_expo.zoo.cli import main  # noqa: E402
from sb3_expo.zoo.experiment import ExpoExperimentManager, PretrainCallback  # noqa: E402
from sb3_expo.zoo.hyperparams_opt import convert_expo_params, sample_expo_params  # noqa: E402

HYPERPARAMS = yaml.safe_load(DEFAULT_HYPERPARAMS.read_text())
ZOO_KEYS = {"pretrain_steps", "critic_pretrain_steps", "eval_freq", "n_eval_episodes", "n_eval_envs", "deterministic_eval"}
TINY_OVERRIDES = [
    "batch_size:16",
    "n_critics:2",
    "n_base_samples:2",
    "n_edit_samples:2",
    "diffusion_steps:2",
    "gradient_steps:1",
    "policy_delay:1",
    "buffer_size:2000",
    "policy_kwargs:dict(net_arch=[16],denoiser_width=16,denoiser_blocks=1)",
]


class SpacesEnv(gym.Env):
    """An env with a task's spaces, for tasks whose simulator or data is not installed here."""

    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def task_env(env_id):
    if env_id in ANTMAZE_TASKS:  # the spaces of the maze the dataset's evaluation env recreates
        maze = "Large" if "large" in env_id else "Medium"
        return gym.make(f"AntMaze_{maze}_Diverse_GR-v4")
    if env_id in ROBOMIMIC_TASKS:  # robosuite is not installed here: robomimic Lift's flat low-dim sizes
        box = gym.spaces.Box(-np.inf, np.inf, (19,), np.float32)
        return SpacesEnv(box, gym.spaces.Box(-1, 1, (7,), np.float32))
    return gym.make("Pendulum-v1" if env_id == "default" else env_id)


def preprocess(env_id, tmp_path):
    """One YAML entry through ExpoExperimentManager's pre-processing, as `sb3-expo train` does."""
    manager = ExpoExperimentManager(
        argparse.Namespace(), "expo", "Pendulum-v1" if env_id == "default" else env_id, str(tmp_path), n_timesteps=-1
    )
    hyperparams, _, callbacks, _ = manager._preprocess_hyperparams(dict(HYPERPARAMS[env_id]))
    return manager, hyperparams, callbacks


@pytest.mark.parametrize("env_id", sorted(HYPERPARAMS))
def test_every_yaml_entry_builds_its_model(env_id, tmp_path):
    manager, hyperparams, callbacks = preprocess(env_id, tmp_path)
    assert not ZOO_KEYS & set(hyperparams)
    entry = HYPERPARAMS[env_id]
    pretrain = [callback for callback in callbacks if isinstance(callback, PretrainCallback)]
    expected = [(entry.get("pretrain_steps", 0), entry.get("critic_pretrain_steps", "auto"))]
    assert [(callback.n_steps, callback.critic_steps) for callback in pretrain] == ([] if expected[0][0] == 0 else expected)
    if env_id.startswith(("sb3_expo/AntMaze", "sb3_expo/Adroit", "sb3_expo/Robomimic", "sb3_expo/MimicGen")):
        assert entry["base_imitates"] == "all"  # the paper's entries keep the paper's recipe
    if "eval_freq" in entry:
        assert (manager.eval_freq, manager.n_eval_episodes) == (entry["eval_freq"], entry["n_eval_episodes"])
        assert manager.deterministic_eval == entry["deterministic_eval"]
    if entry.get("pretrain_steps"):
        assert hyperparams["learning_starts"] == 0  # the paper: no random warm-up after pretraining
    # The data is checked by the task tests; here every other setting must be a valid EXPO argument.
    hyperparams.update(offline_dataset=None, buffer_size=100, device="cpu")
    model = EXPO(env=task_env(env_id), **hyperparams)
    assert model.n_critics == 10 or env_id in ("Pendulum-v1", "sb3_expo/PointMazeUMazeFixed-v0")


def test_yaml_datasets_match_the_tasks():
    for env_id, dataset_id in ANTMAZE_TASKS.items():
        assert HYPERPARAMS[env_id]["offline_dataset"] == dataset_id
        assert HYPERPARAMS[env_id]["reward_shift"] == -1.0 and HYPERPARAMS[env_id]["critic_subset_size"] == 1
    for env_id in ROBOMIMIC_TASKS:
        assert HYPERPARAMS[env_id]["offline_dataset"] is None  # the user's file, from --env-kwargs dataset_path
        assert HYPERPARAMS[env_id]["offline_dataset_kwargs"]["obs_keys"] == list(ROBOMIMIC_OBS_KEYS)
    local = [entry["offline_dataset"] for entry in HYPERPARAMS.values() if entry.get("offline_dataset") in LOCAL_DATASETS]
    assert POINTMAZE_DATASET_ID in local and len(local) == 4  # PointMaze and the three relabelled Adroit datasets


def test_sampler_keeps_k_at_most_n_and_one_policy_update_per_step():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        params = sample_expo_params(study.ask(), n_actions=2, n_envs=1, additional_args={})
        assert params["n_edit_samples"] <= params["n_base_samples"]
        assert params["gradient_steps"] == params["policy_delay"] and "utd" not in params
        assert 0.05 <= params["edit_scale"] <= 0.7 and 1e-5 <= params["learning_rate"] <= 1e-3
    assert convert_expo_params({"utd": 5})["policy_delay"] == 5


def test_missing_zoo_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rl_zoo3", None)
    with pytest.raises(ImportError, match=r'pip install "sb3_expo\[zoo\]"'):
        main(["train", "--env", "Pendulum-v1"])


def test_console_script_is_declared():
    scripts = {entry.name: entry.value for entry in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("sb3-expo") == "sb3_expo.zoo.cli:main"


# ------------------------------------------------------------------------------------- the command, end to end


def run_cli(*args, cwd, env):
    result = subprocess.run(
        [sys.executable, "-m", "sb3_expo.zoo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def tensorboard_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


@pytest.fixture(scope="module")
def pointmaze_run(tmp_path_factory):
    """`sb3-expo train` on the PointMaze demo task for 300 steps (tiny networks), on a small local dataset."""
    root = tmp_path_factory.mktemp("zoo")
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root / "minari"), "HF_HUB_OFFLINE": "1"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", env["MINARI_DATASETS_PATH"])
        build_pointmaze_dataset(n_episodes=3)
    common = ["--env", "sb3_expo/PointMazeUMazeFixed-v0", "--num-threads", "1", "--device", "cpu", "--seed", "0"]
    stdout = run_cli(
        "train", *common, "-n", "300", "--eval-freq", "150", "--eval-episodes", "2", "-f", "logs",
        "-params", "pretrain_steps:20", "critic_pretrain_steps:5", *TINY_OVERRIDES, cwd=root, env=env,
    )  # fmt: skip
    return root, env, common, stdout


def test_train_writes_model_evaluations_and_tensorboard(pointmaze_run):
    root, _, _, stdout = pointmaze_run
    run = root / "logs" / "expo" / "sb3_expo-PointMazeUMazeFixed-v0_1"
    assert (run / "sb3_expo-PointMazeUMazeFixed-v0.zip").is_file()
    evaluations = np.load(run / "evaluations.npz")
    assert evaluations["timesteps"].tolist() == [150, 300] and "successes" in evaluations
    assert "20 imitation steps of the base policy, then 5 UTD blocks of the critics and the edit actor" in stdout
    tensorboard_dir = root / "logs" / "tensorboard" / "sb3_expo-PointMazeUMazeFixed-v0" / "EXPO_1"
    assert f"tensorboard --logdir logs{os.sep}tensorboard" in stdout
    tags = tensorboard_tags(tensorboard_dir)
    assert {"train/critic_loss", "train/edit_win_rate", "eval/success_rate", "eval/mean_reward", "pretrain/base_loss"} <= tags
    model = EXPO.load(run / "sb3_expo-PointMazeUMazeFixed-v0.zip", offline_dataset=None, device="cpu")
    assert model.edit_scale == HYPERPARAMS["sb3_expo/PointMazeUMazeFixed-v0"]["edit_scale"] and model.n_critics == 2


def test_enjoy_loads_the_trained_model(pointmaze_run):
    root, env, common, _ = pointmaze_run
    stdout = run_cli("enjoy", *common, "-f", "logs", "--no-render", "-n", "310", cwd=root, env=env)
    assert "Loading logs" in stdout and "Success rate" in stdout and "Mean episode length" in stdout


@pytest.mark.slow  # rl-zoo's Optuna search end to end
def test_optimize_one_trial(pointmaze_run):
    root, env, common, _ = pointmaze_run
    stdout = run_cli(
        "train", *common, "-optimize", "--n-trials", "1", "-n", "100", "--n-evaluations", "1", "--eval-episodes", "1",
        "--no-optim-plots", "-f", "optimize", "-params", "learning_starts:50", "pretrain_steps:5", *TINY_OVERRIDES,
        cwd=root, env=env,
    )  # fmt: skip
    assert "Trial 0 finished" in stdout
    reports = list((root / "optimize" / "expo").glob("report_*.csv"))
    assert len(reports) == 1
