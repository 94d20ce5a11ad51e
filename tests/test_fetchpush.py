"""The FetchPush task ended at success, its scripted expert and decoy, and the Minari dataset built locally from them."""

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")
minari = pytest.importorskip("minari")

from sb3_expo import tasks  # noqa: E402
from sb3_expo.data import load_minari, validate_against_env  # noqa: E402
from sb3_expo.envs import GoalEnvSuccess  # noqa: E402
from sb3_expo.tasks import fetchpush  # noqa: E402
from sb3_expo.tasks.fetchpush import (  # noqa: E402
    FETCHPUSH_DATASET_ID,
    FETCHPUSH_ENV_ID,
    FETCHPUSH_RECIPE,
    FetchPushDecoy,
    FetchPushExpert,
    build_fetchpush_dataset,
    make_fetchpush_env,
)
from sb3_expo.tasks.recording import RandomController, rollout_episode  # noqa: E402


@pytest.fixture(scope="module")
def env():
    env = make_fetchpush_env()
    yield env
    env.close()


def test_registered_task(env):
    assert env.spec.id == FETCHPUSH_ENV_ID and env.spec.max_episode_steps == 50
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert env.observation_space["observation"].shape == (25,) and env.observation_space["desired_goal"].shape == (3,)
    assert env.action_space.shape == (4,)
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        assert info["is_success"] is False and env.observation_space.contains(obs)
        assert np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]) >= fetchpush.FETCHPUSH_MIN_GOAL_DISTANCE
    again, _ = env.reset(seed=4)
    assert all(np.array_equal(obs[key], again[key]) for key in obs)  # the extra resets are seeded too
    made = gym.make(FETCHPUSH_ENV_ID, max_episode_steps=3)
    made.reset(seed=0)
    for _ in range(3):
        _, reward, terminated, truncated, info = made.step(np.zeros(4, dtype=np.float32))
    assert reward == -1.0 and not terminated and truncated and info["is_success"] is False and info["success"] is False
    made.close()


def test_goal_env_success_resets_solved_starts():
    class Solved(gym.Wrapper):
        """Every reset but each third starts with the goal achieved."""

        def __init__(self, env):
            super().__init__(env)
            self.resets = 0

        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            self.resets += 1
            if self.resets % 3:
                obs = {**obs, "desired_goal": obs["achieved_goal"].copy()}
            return obs, info

    inner = Solved(fetchpush.create_fetchpush().env.env)  # the bare FetchPush under the task's wrappers
    wrapped = GoalEnvSuccess(inner)
    obs, info = wrapped.reset(seed=0)
    assert inner.resets == 3 and not np.array_equal(obs["achieved_goal"], obs["desired_goal"])
    assert info == {"success": False, "is_success": False}
    wrapped.close()


def test_noisy_expert_beats_random(env):
    expert = FetchPushExpert(env, seed=0)  # the dataset's noise
    episodes = [rollout_episode(env, expert, seed=seed) for seed in range(5)]
    assert sum(episode["is_success"] for episode in episodes) >= 4
    for episode in episodes:
        if episode["is_success"]:  # sparse reward, ended at success
            assert episode["terminations"][-1] and episode["rewards"] == [-1.0] * (len(episode["rewards"]) - 1) + [0.0]
    actions = np.concatenate([episode["actions"] for episode in episodes])
    assert np.all(np.abs(actions) <= 1.0) and actions.dtype == env.action_space.dtype
    random_policy = RandomController(env.action_space, seed=0)
    random_episodes = [rollout_episode(env, random_policy, seed=seed) for seed in range(3)]
    assert not any(episode["is_success"] for episode in random_episodes)
    assert all(len(episode["rewards"]) == 50 and episode["truncations"][-1] for episode in random_episodes)


def test_decoy_pushes_the_block_elsewhere(env):
    decoy = FetchPushDecoy(env, seed=0)
    episode = rollout_episode(env, decoy, seed=1)
    blocks, goal = episode["observations"]["achieved_goal"], episode["observations"]["desired_goal"][0]
    assert not episode["is_success"] and episode["truncations"][-1]
    assert np.linalg.norm(blocks[-1] - blocks[0]) > 0.05  # it moved the block, not to the goal
    assert np.linalg.norm(decoy._target[:2] - goal[:2]) >= decoy.min_goal_distance
    decoy.reset()
    assert decoy._target is None


def test_mixture_is_reproducible(env):
    episodes = FETCHPUSH_RECIPE.record(env, n_episodes=3, expert_fraction=0.5, noise_std=0.3, seed=0)
    again = FETCHPUSH_RECIPE.record(env, n_episodes=3, expert_fraction=0.5, noise_std=0.3, seed=0)
    assert all(np.array_equal(a["actions"], b["actions"]) for a, b in zip(episodes, again))


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "minari"


def test_build_dataset_loads_with_dict_spaces(minari_root, env):
    dataset_id = "test/fetchpush-v0"
    dataset = build_fetchpush_dataset(dataset_id, n_episodes=4, expert_fraction=0.5, seed=0, check_episodes=3)
    assert (minari_root / "test" / "fetchpush-v0" / "data").is_dir()
    metadata = dataset.storage.metadata
    assert metadata["ref_min_score"] == -50.0 and -50.0 < metadata["ref_max_score"] < 0.0
    data = load_minari(dataset_id)
    assert len(data) == dataset.total_steps
    assert data.observations["observation"].shape == (len(data), 25) and data.actions.shape == (len(data), 4)
    validate_against_env(data, env.observation_space, env.action_space)
    assert set(np.unique(data.rewards)) <= {-1.0, 0.0}
    assert np.array_equal(data.terminals, data.rewards == 0.0)  # ended at success, and only there
    assert dataset.recover_environment().spec.id == FETCHPUSH_ENV_ID

    with pytest.raises(RuntimeError, match="expert reaches the goal"):  # too noisy: nothing is written
        build_fetchpush_dataset("test/fetchpush-noisier-v0", n_episodes=2, noise_std=5.0, check_episodes=3)
    assert "test/fetchpush-noisier-v0" not in minari.list_local_datasets()
    with pytest.raises(ValueError, match="expert_fraction"):
        build_fetchpush_dataset("test/fetchpush-v1", expert_fraction=-0.1)


def test_local_datasets_know_the_builders():
    assert tasks.LOCAL_DATASETS[FETCHPUSH_DATASET_ID] is build_fetchpush_dataset
    assert tasks.LOCAL_DATASETS["sb3_expo/pointmaze-large-noisy-v0"].__name__ == "build_pointmaze_large_dataset"
    assert fetchpush.FETCHPUSH_DATASET_ID == "sb3_expo/fetchpush-noisy-v0"
