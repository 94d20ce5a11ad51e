"""
The paper's task envs (sb3_expo.tasks) and their wrappers, each trained for a few steps on a small
dataset built locally with the real dataset's id and spaces (datasets cannot be downloaded here).
"""

import copy
import json
import sys
import types
import warnings

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")
minari = pytest.importorskip("minari")
h5py = pytest.importorskip("h5py")

from sb3_expo import EXPO  # noqa: E402
from sb3_expo.data import DatasetNotFoundError, load_minari, load_minari_dataset, load_robomimic_hdf5  # noqa: E402
from sb3_expo.envs import IsSuccessInfo, TerminateOnSuccess  # noqa: E402
from sb3_expo.tasks import (  # noqa: E402
    ADROIT_BINARY_TASKS,
    ANTMAZE_TASKS,
    ROBOMIMIC_OBS_KEYS,
    RobosuiteEnv,
    adroit_binary_dataset_id,
    adroit_binary_env_id,
    build_adroit_binary_dataset,
    make_robomimic_env,
    prepare_offline_dataset,
)
from sb3_expo.tasks.adroit import AdroitBinaryReward  # noqa: E402

# The evaluation maze of Minari's D4RL/antmaze/medium-*-v1 datasets: D4RL's fixed start "r" and goal "g".
ANTMAZE_MEDIUM_EVAL_MAP = [
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, "r", 0, 1, 1, 0, 0, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 1, 0, 0, 0, 1, 1, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 0, 1, 0, 0, 1, 0, 1],
    [1, 0, 0, 0, 1, 0, "g", 1],
    [1, 1, 1, 1, 1, 1, 1, 1],
]


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "minari"


def _stack(observations):
    if isinstance(observations[0], dict):
        return {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
    return np.stack(observations)


def random_episodes(env, n_episodes, n_steps, success=None):
    """Random-action Minari episode buffers of ``n_steps`` each (the last step truncated)."""
    from minari.data_collector import EpisodeBuffer

    env.action_space.seed(0)
    buffers = []
    for episode in range(n_episodes):
        observations, actions, rewards = [env.reset(seed=episode)[0]], [], []
        for _ in range(n_steps):
            actions.append(env.action_space.sample())
            obs, reward, *_ = env.step(actions[-1])
            observations.append(obs)
            rewards.append(float(reward))
        infos = None if success is None else {"success": np.array([False, *success[episode]])}
        buffers.append(
            EpisodeBuffer(
                id=episode,
                observations=_stack(observations),
                actions=np.stack(actions),
                rewards=rewards,
                terminations=[False] * n_steps,
                truncations=[False] * (n_steps - 1) + [True],
                infos=infos,
            )
        )
    return buffers


def create_dataset(dataset_id, buffers, env_spec, eval_env_spec=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari warns about missing metadata (author, ...)
        return minari.create_dataset_from_buffers(
            dataset_id, buffers, env=env_spec, eval_env=eval_env_spec, algorithm_name="random"
        )


class SuccessScript(gym.Env):
    """Box env whose ``info["success"]`` follows a script, to check wrappers step by step."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, script):
        self.script, self.t = script, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), 5.0, False, self.t == len(self.script), {"success": self.script[self.t - 1]}


# ------------------------------------------------------------------------------------------------- wrappers


def test_terminate_on_success_ends_the_episode_at_the_goal():
    env = IsSuccessInfo(TerminateOnSuccess(SuccessScript([False, False, True, False])))
    assert env.reset()[1]["is_success"] is False
    steps = [env.step(np.zeros(1)) for _ in range(3)]
    assert [step[2] for step in steps] == [False, False, True]
    assert steps[-1][4]["is_success"] is True and steps[-1][1] == 5.0  # the reward is untouched


def test_adroit_binary_reward_and_dapg_success():
    script = [True] * 3 + [False] + [True] * 2
    env = AdroitBinaryReward(SuccessScript(script), min_success_steps=4)
    assert env.reset()[1]["is_success"] is False
    steps = [env.step(np.zeros(1)) for _ in script]
    assert [step[1] for step in steps] == [0.0, 0.0, 0.0, -1.0, 0.0, 0.0]
    # success once the goal was achieved on more than 4 steps: only at the last step (5 steps)
    assert [step[4]["is_success"] for step in steps] == [False] * 5 + [True]
    env.reset()
    assert env.step(np.zeros(1))[4]["is_success"] is False  # the count restarts


# --------------------------------------------------------------------------------------------------- AntMaze


@pytest.fixture
def antmaze_medium_diverse(minari_root):
    """``D4RL/antmaze/medium-diverse-v1`` as Minari's is made: the GR maze, continuing, with the D4RL evaluation maze."""
    data_env = gym.make("AntMaze_Medium_Diverse_GR-v4", continuing_task=True, reset_target=False)
    eval_spec = copy.deepcopy(data_env.spec)
    eval_spec.kwargs["maze_map"] = ANTMAZE_MEDIUM_EVAL_MAP
    create_dataset("D4RL/antmaze/medium-diverse-v1", random_episodes(data_env, 2, 30), data_env.spec, eval_spec)
    return data_env


def test_antmaze_env_is_the_evaluation_maze(antmaze_medium_diverse):
    env = gym.make("sb3_expo/AntMaze-medium-diverse-v1")
    assert env.observation_space == antmaze_medium_diverse.observation_space
    assert env.action_space == antmaze_medium_diverse.action_space
    maze = env.unwrapped.maze
    start, goal = maze.cell_rowcol_to_xy(np.array([1, 1])), maze.cell_rowcol_to_xy(np.array([6, 6]))
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        assert np.abs(obs["achieved_goal"] - start).max() <= maze.maze_size_scaling * 0.25 + 1e-6
        assert np.abs(obs["desired_goal"] - goal).max() <= maze.maze_size_scaling * 0.25 + 1e-6
        assert info["is_success"] is False
    assert env.spec.max_episode_steps == 1000  # the time limit of the recovered env
    _, reward, terminated, _, info = env.step(env.action_space.sample())
    assert reward == 0.0 and not terminated and info["is_success"] is False
    env.close()


def test_antmaze_trains_on_its_dataset(antmaze_medium_diverse, tiny_kwargs):
    tiny_kwargs.update(learning_starts=0, critic_subset_size=1)
    model = EXPO(
        "MultiInputPolicy",
        gym.make("sb3_expo/AntMaze-medium-diverse-v1"),
        offline_dataset="D4RL/antmaze/medium-diverse-v1",
        reward_shift=-1.0,
        edit_scale=0.05,
        **tiny_kwargs,
    )
    assert model.replay_buffer.offline_size == 60
    model.pretrain(5).learn(20)
    assert model.num_timesteps == 20


def test_antmaze_missing_dataset_says_how_to_download(minari_root):
    with pytest.raises(DatasetNotFoundError, match="minari download D4RL/antmaze/large-play-v1"):
        gym.make("sb3_expo/AntMaze-large-play-v1")


def test_every_antmaze_task_names_its_dataset():
    assert sorted(ANTMAZE_TASKS.values()) == [
        f"D4RL/antmaze/{m}-{k}-v1" for m in ("large", "medium") for k in ("diverse", "play")
    ]
    assert all(gym.spec(env_id).kwargs["dataset_id"] == dataset for env_id, dataset in ANTMAZE_TASKS.items())


# ---------------------------------------------------------------------------------------------------- Adroit


@pytest.mark.parametrize("task", sorted(ADROIT_BINARY_TASKS))
def test_adroit_binary_envs(task):
    env = gym.make(adroit_binary_env_id(task))
    horizon, _ = ADROIT_BINARY_TASKS[task]
    assert env.spec.max_episode_steps == horizon
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert reward in (0.0, -1.0) and "is_success" in info
    env.close()


@pytest.fixture
def pen_cloned(minari_root):
    """``D4RL/pen/cloned-v2`` with Minari's spaces and ``infos["success"]``, from random actions."""
    pen = gym.make("AdroitHandPen-v1", max_episode_steps=200)
    success = [[step % 3 == 0 for step in range(12)], [False] * 12]
    create_dataset("D4RL/pen/cloned-v2", random_episodes(pen, 2, 12, success), pen.spec)
    return success


def test_adroit_relabelled_dataset_trains(pen_cloned, tiny_kwargs):
    dataset_id = adroit_binary_dataset_id("pen")
    assert dataset_id == "sb3_expo/pen-binary-cloned-v2"
    prepare_offline_dataset(dataset_id)  # builds it from D4RL/pen/cloned-v2
    data, original = load_minari(dataset_id), load_minari("D4RL/pen/cloned-v2")
    assert np.array_equal(data.rewards, np.concatenate(pen_cloned).astype(np.float32) - 1.0)
    assert np.array_equal(data.observations, original.observations) and np.array_equal(data.actions, original.actions)
    assert minari.load_dataset(dataset_id).recover_environment().spec.id == adroit_binary_env_id("pen")

    model = EXPO("MlpPolicy", adroit_binary_env_id("pen"), offline_dataset=dataset_id, **tiny_kwargs)
    model.learn(60)
    assert model.num_timesteps == 60


def test_adroit_relabelling_needs_success_infos(minari_root):
    pen = gym.make("AdroitHandPen-v1", max_episode_steps=200)
    create_dataset("D4RL/pen/human-v2", random_episodes(pen, 1, 5), pen.spec)
    with pytest.raises(ValueError, match=r"no infos\['success'\]"):
        build_adroit_binary_dataset("pen", source="human")
    with pytest.raises(DatasetNotFoundError, match=r"minari download D4RL/door/cloned-v2"):
        build_adroit_binary_dataset("door")
    with pytest.raises(DatasetNotFoundError, match=r"python -m sb3_expo\.tasks sb3_expo/door-binary-cloned-v2"):
        load_minari_dataset("sb3_expo/door-binary-cloned-v2")


# ---------------------------------------------------------------------------------------- robomimic / MimicGen


def write_robomimic_file(path, n_demos=2, n_steps=15):
    """A low-dim robomimic file (Lift's keys and sizes), with the env_args robomimic stores."""
    sizes = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as file:
        data = file.create_group("data")
        data.attrs["env_args"] = json.dumps(
            {"env_name": "Lift", "type": 1, "env_kwargs": {"robots": ["Panda"], "horizon": 500}}
        )
        for demo in range(n_demos):
            group = data.create_group(f"demo_{demo}")
            for obs_group in ("obs", "next_obs"):
                for key, size in sizes.items():
                    group.create_dataset(f"{obs_group}/{key}", data=rng.normal(size=(n_steps, size)))
            group.create_dataset("actions", data=rng.uniform(-1, 1, size=(n_steps, 7)))
            group.create_dataset("rewards", data=np.r_[np.zeros(n_steps - 1), 1.0])
            group.create_dataset("dones", data=np.r_[np.zeros(n_steps - 1), 1.0])
    return sizes


class FakeRobosuiteLift:
    """Stands in for ``robosuite.make("Lift", ...)``'s env: the API RobosuiteEnv uses, success at step 3."""

    def __init__(self, sizes, **kwargs):
        self.sizes, self.kwargs, self.t = sizes, kwargs, 0
        self.action_spec = (-np.ones(7), np.ones(7))

    def _obs(self):
        obs = {key: np.full(size, self.t, np.float64) for key, size in self.sizes.items() if key != "object"}
        return {**obs, "object-state": np.full(self.sizes["object"], -self.t, np.float64), "robot0_joint_pos": np.zeros(7)}

    def reset(self):
        self.t = 0
        return self._obs()

    def step(self, action):
        self.t += 1
        return self._obs(), 0.3, False, {}

    def _check_success(self):
        return self.t >= 3

    def close(self):
        pass


def test_robomimic_env_matches_the_file(tmp_path, monkeypatch, tiny_kwargs):
    path = tmp_path / "lift_low_dim.hdf5"
    sizes = write_robomimic_file(path)
    made = {}

    def make(env_name, **kwargs):
        made.update(env_name=env_name, **kwargs)
        return FakeRobosuiteLift(sizes, **kwargs)

    monkeypatch.setitem(sys.modules, "robosuite", types.SimpleNamespace(make=make))
    env = gym.make("sb3_expo/RobomimicLift-v0", dataset_path=str(path))
    assert made["env_name"] == "Lift" and made["robots"] == ["Panda"]
    assert made["reward_shaping"] is False and made["use_camera_obs"] is False and made["ignore_done"] is True
    data = load_robomimic_hdf5(path, obs_keys=list(ROBOMIMIC_OBS_KEYS))
    assert env.observation_space.shape == data.observations.shape[1:] == (19,)
    obs, info = env.reset(seed=0)
    assert info["is_success"] is False
    # the flat observation concatenates the keys in ROBOMIMIC_OBS_KEYS order, "object" from "object-state"
    obs, reward, terminated, _, info = env.step(np.zeros(7))
    assert np.array_equal(obs, np.r_[np.ones(9), -np.ones(10)])
    assert (reward, terminated, info["is_success"]) == (0.0, False, False)
    for _ in range(2):
        obs, reward, terminated, _, info = env.step(np.zeros(7))
    assert (reward, terminated, info["is_success"]) == (1.0, True, True)
    assert env.spec.max_episode_steps == 400 and isinstance(env.unwrapped, RobosuiteEnv)

    model = EXPO(
        "MlpPolicy",
        env,
        offline_dataset=str(path),
        offline_dataset_kwargs=dict(obs_keys=list(ROBOMIMIC_OBS_KEYS)),
        **tiny_kwargs,
    )
    model.learn(10)


def test_robomimic_missing_simulator_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "robosuite", None)
    with pytest.raises(ImportError, match=r'pip install "sb3_expo\[robomimic\]"'):
        gym.make("sb3_expo/RobomimicSquare-v0", dataset_path=str(tmp_path / "square.hdf5"))
    with pytest.raises(ImportError, match=r'pip install "sb3_expo\[robomimic\]"'):  # MimicGen runs on robosuite too
        gym.make("sb3_expo/MimicGenThreading-v0", dataset_path=str(tmp_path / "threading.hdf5"))


def fake_robosuite(monkeypatch, registered_envs, make):
    """A robosuite module with only ``make`` and ``environments.base.REGISTERED_ENVS`` (robosuite's env registry)."""
    base = types.SimpleNamespace(REGISTERED_ENVS=registered_envs)
    monkeypatch.setitem(sys.modules, "robosuite", types.SimpleNamespace(make=make))
    monkeypatch.setitem(sys.modules, "robosuite.environments", types.SimpleNamespace(base=base))
    monkeypatch.setitem(sys.modules, "robosuite.environments.base", base)


def test_mimicgen_task_checks_that_mimicgen_registered_the_env(tmp_path, monkeypatch):
    path = tmp_path / "lift_low_dim.hdf5"  # env_args name "Lift": stands for a MimicGen env such as "Threading_D0"
    sizes = write_robomimic_file(path)
    registered = {}
    fake_robosuite(monkeypatch, registered, make=lambda env_name, **kwargs: FakeRobosuiteLift(sizes, **kwargs))

    monkeypatch.setitem(sys.modules, "mimicgen", None)  # not installed
    with pytest.raises(ImportError, match=r"github\.com/NVlabs/mimicgen"):
        gym.make("sb3_expo/MimicGenThreading-v0", dataset_path=str(path))

    # PyPI's impostor: `import mimicgen` succeeds but no environment is registered with robosuite.
    monkeypatch.setitem(sys.modules, "mimicgen", types.SimpleNamespace(Client=object))
    with pytest.raises(ImportError, match=r"not NVIDIA's MimicGen.*pip uninstall mimicgen"):
        gym.make("sb3_expo/MimicGenThreading-v0", dataset_path=str(path))

    registered["Lift"] = FakeRobosuiteLift  # what NVIDIA's `import mimicgen` does for its own envs
    env = gym.make("sb3_expo/MimicGenThreading-v0", dataset_path=str(path))
    assert env.observation_space.shape == (19,)


def test_robomimic_missing_file_or_path(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "robosuite", types.SimpleNamespace(make=None))
    with pytest.raises(FileNotFoundError, match=r"download_datasets\.py"):
        make_robomimic_env(tmp_path / "missing.hdf5")
    with pytest.raises(ValueError, match="dataset_path"):
        gym.make("sb3_expo/RobomimicCan-v0")
