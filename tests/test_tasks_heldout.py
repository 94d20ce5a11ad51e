"""
The learning benchmark's held-out tasks (FetchPickAndPlace, the medium PointMaze): their envs, scripted
controllers and Minari datasets built locally. Tiny datasets only: the measured figures of the full ones
are in the builders' docstrings.
"""

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")
minari = pytest.importorskip("minari")

from gymnasium_robotics.envs.maze import maps  # noqa: E402

from sb3_expo import tasks  # noqa: E402
from sb3_expo.data import load_minari, validate_against_env  # noqa: E402
from sb3_expo.tasks import pickandplace, pointmaze  # noqa: E402
from sb3_expo.tasks.pickandplace import (  # noqa: E402
    PICKANDPLACE_DATASET_ID,
    PICKANDPLACE_ENV_ID,
    PickAndPlaceDecoy,
    PickAndPlaceExpert,
    build_pickandplace_dataset,
    make_pickandplace_env,
)
from sb3_expo.tasks.pointmaze import (  # noqa: E402
    POINTMAZE_MEDIUM_DATASET_ID,
    POINTMAZE_MEDIUM_ENV_ID,
    PointMazeExpert,
    PointMazeWanderer,
    build_pointmaze_medium_dataset,
    make_pointmaze_medium_env,
    shortest_path,
)
from sb3_expo.tasks.recording import RandomController, rollout_episode  # noqa: E402


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "minari"


def test_local_datasets_know_the_builders():
    assert tasks.LOCAL_DATASETS[PICKANDPLACE_DATASET_ID] is build_pickandplace_dataset
    assert tasks.LOCAL_DATASETS[POINTMAZE_MEDIUM_DATASET_ID] is build_pointmaze_medium_dataset
    assert PICKANDPLACE_ENV_ID in gym.registry and POINTMAZE_MEDIUM_ENV_ID in gym.registry


def test_benchmark_registers_them_held_out():
    from benchmarks.learning.tasks import TASKS

    for name, dataset_id in (("pickandplace", PICKANDPLACE_DATASET_ID), ("pointmaze-medium", POINTMAZE_MEDIUM_DATASET_ID)):
        task = TASKS[name]
        assert task.split == "held-out" and task.tuned == {} and task.dataset_id == dataset_id
    assert TASKS["pointmaze-medium"].reward_shift == -1.0 and TASKS["pickandplace"].reward_shift == 0.0


# ------------------------------------------------------------------------------------------- pick and place


@pytest.fixture(scope="module")
def fetch_env():
    env = make_pickandplace_env()
    yield env
    env.close()


def test_pickandplace_task(fetch_env):
    env = fetch_env
    assert env.spec.id == PICKANDPLACE_ENV_ID and env.spec.max_episode_steps == 50
    assert env.observation_space["observation"].shape == (25,) and env.action_space.shape == (4,)
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        assert info["is_success"] is False and env.observation_space.contains(obs)
        assert np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]) >= pickandplace.PICKANDPLACE_MIN_GOAL_DISTANCE


def test_pickandplace_expert_grasps_and_places(fetch_env):
    env = fetch_env
    expert = PickAndPlaceExpert(env, noise_std=0.0)
    air_goals = 0
    for seed in range(4):
        episode = rollout_episode(env, expert, seed=seed)
        assert episode["is_success"] and episode["terminations"][-1] and not any(episode["truncations"])
        assert episode["rewards"] == [-1.0] * (len(episode["rewards"]) - 1) + [0.0]  # sparse, ended at success
        fingers = episode["observations"]["observation"][:, 9:11].sum(axis=1)
        assert fingers.max() > 0.09 and fingers[-1] < expert.held_width  # opened, then holds the block
        air_goals += episode["observations"]["desired_goal"][0, 2] > env.unwrapped.height_offset + 0.01
    assert air_goals > 0  # seeds 0-3 include a goal in the air: the block was lifted, not pushed


def test_pickandplace_decoy_and_random_actions_fail(fetch_env):
    env = fetch_env
    decoy = PickAndPlaceDecoy(env, seed=0)
    episode = rollout_episode(env, decoy, seed=1)
    blocks = episode["observations"]["achieved_goal"]
    assert not episode["is_success"] and episode["truncations"][-1]
    assert np.linalg.norm(blocks - blocks[0], axis=1).max() > 0.05  # it moved the block, not to the goal
    decoy.reset()
    assert decoy._target is None and decoy._release == 0
    random_episode = rollout_episode(env, RandomController(env.action_space, seed=0), seed=0)
    assert not random_episode["is_success"] and len(random_episode["rewards"]) == 50


def test_pickandplace_dataset(minari_root, fetch_env):
    dataset_id = "test/pickandplace-v0"
    dataset = build_pickandplace_dataset(dataset_id, n_episodes=3, expert_fraction=0.5, seed=0, check_episodes=3)
    assert (minari_root / "test" / "pickandplace-v0" / "data").is_dir()
    data = load_minari(dataset_id)
    assert len(data) == dataset.total_steps and data.actions.shape == (len(data), 4)
    validate_against_env(data, fetch_env.observation_space, fetch_env.action_space)
    assert set(np.unique(data.rewards)) <= {-1.0, 0.0}
    assert np.array_equal(data.terminals, data.rewards == 0.0)  # ended at success, and only there
    assert dataset.recover_environment().spec.id == PICKANDPLACE_ENV_ID


# ---------------------------------------------------------------------------------------------- medium maze


@pytest.fixture(scope="module")
def maze_env():
    env = make_pointmaze_medium_env()
    yield env
    env.close()


def test_medium_maze_is_gymnasium_robotics_medium_maze():
    layout = [[1 if cell == 1 else 0 for cell in row] for row in pointmaze.POINTMAZE_MEDIUM_FIXED]
    assert layout == maps.MEDIUM_MAZE
    cells = [(row, column) for row, line in enumerate(pointmaze.POINTMAZE_MEDIUM_FIXED) for column, cell in enumerate(line)]
    assert [cell for cell in cells if pointmaze.POINTMAZE_MEDIUM_FIXED[cell[0]][cell[1]] == "r"] == [
        pointmaze.POINTMAZE_MEDIUM_START_CELL
    ]
    path = shortest_path(
        pointmaze.POINTMAZE_MEDIUM_FIXED, pointmaze.POINTMAZE_MEDIUM_START_CELL, pointmaze.POINTMAZE_MEDIUM_GOAL_CELL
    )
    assert len(path) == 11  # 10 moves: between the U-maze's 6 and the large maze's 14


def test_medium_maze_expert_reaches_the_goal(maze_env):
    env = maze_env
    assert env.spec.id == POINTMAZE_MEDIUM_ENV_ID and env.spec.max_episode_steps == 330
    start = env.unwrapped.maze.cell_rowcol_to_xy(np.array(pointmaze.POINTMAZE_MEDIUM_START_CELL))
    expert = PointMazeExpert(env, noise_std=0.0)
    for seed in range(2):
        episode = rollout_episode(env, expert, seed=seed)
        assert np.abs(episode["observations"]["achieved_goal"][0] - start).max() <= 0.25
        assert episode["is_success"] and episode["terminations"][-1] and not any(episode["truncations"])
        assert episode["rewards"] == [0.0] * (len(episode["rewards"]) - 1) + [1.0]
        assert len(episode["rewards"]) < env.spec.max_episode_steps / 1.5


def test_medium_maze_wanderer_and_random_actions_fail(maze_env):
    env = maze_env
    wanderer = PointMazeWanderer(env, seed=0)
    assert pointmaze.POINTMAZE_MEDIUM_GOAL_CELL not in wanderer.cells
    episode = rollout_episode(env, wanderer, seed=0)
    assert not episode["is_success"] and episode["truncations"][-1]
    random_episode = rollout_episode(env, RandomController(env.action_space, seed=0), seed=0)
    assert not random_episode["is_success"] and len(random_episode["rewards"]) == 330


def test_medium_maze_dataset(minari_root, maze_env):
    dataset_id = "test/pointmaze-medium-v0"
    dataset = build_pointmaze_medium_dataset(dataset_id, n_episodes=2, expert_fraction=1.0, seed=0, check_episodes=2)
    lengths = [len(episode.rewards) for episode in dataset.iterate_episodes()]
    data = load_minari(dataset_id)
    assert len(data) == sum(lengths) == dataset.total_steps
    validate_against_env(data, maze_env.observation_space, maze_env.action_space)
    goal_steps = np.cumsum(lengths) - 1  # expert episodes only: each ends at the goal, a terminal with reward 1
    assert np.flatnonzero(data.terminals).tolist() == goal_steps.tolist() == np.flatnonzero(data.rewards).tolist()
    assert dataset.recover_environment().spec.id == POINTMAZE_MEDIUM_ENV_ID
