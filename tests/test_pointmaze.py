"""The fixed-start PointMaze tasks (U-maze, large maze), their scripted expert, and the Minari datasets built locally."""

import sys

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")
minari = pytest.importorskip("minari")

from gymnasium_robotics.envs.maze import maps  # noqa: E402

from sb3_expo import tasks  # noqa: E402
from sb3_expo.data import load_minari, validate_against_env  # noqa: E402
from sb3_expo.tasks import cli, pointmaze  # noqa: E402
from sb3_expo.tasks.pointmaze import (  # noqa: E402
    LARGE_NOISE_STD,
    POINTMAZE_ENV_ID,
    POINTMAZE_LARGE_ENV_ID,
    POINTMAZE_RECIPE,
    PointMazeExpert,
    PointMazeWanderer,
    build_pointmaze_dataset,
    build_pointmaze_large_dataset,
    cells_short_of_goal,
    make_pointmaze_env,
    make_pointmaze_large_env,
    shortest_path,
)
from sb3_expo.tasks.recording import RandomController, check_controllers, rollout_episode  # noqa: E402

# The ball and goal start anywhere within +-0.25 of their cell centres.
CELL_NOISE = 0.25


@pytest.fixture(scope="module")
def env():
    env = make_pointmaze_env()
    yield env
    env.close()


def cell_centre(env, cell):
    return env.unwrapped.maze.cell_rowcol_to_xy(np.array(cell))


def test_fixed_start_and_goal(env):
    start, goal = cell_centre(env, pointmaze.POINTMAZE_START_CELL), cell_centre(env, pointmaze.POINTMAZE_GOAL_CELL)
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        assert set(obs) == {"observation", "achieved_goal", "desired_goal"}
        assert np.abs(obs["achieved_goal"] - start).max() <= CELL_NOISE
        assert np.abs(obs["desired_goal"] - goal).max() <= CELL_NOISE
        assert info["is_success"] is False
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert env.spec.id == POINTMAZE_ENV_ID and env.spec.max_episode_steps == pointmaze.POINTMAZE_MAX_EPISODE_STEPS


def test_registered_id_and_reimport():
    tasks.register_envs()  # registering twice (as a second import would) is harmless
    made = gym.make(POINTMAZE_ENV_ID, max_episode_steps=7)
    obs, _ = made.reset(seed=0)
    assert made.observation_space.contains(obs)
    for _ in range(7):
        _, reward, terminated, truncated, info = made.step(np.zeros(2, dtype=np.float32))
    assert reward == 0.0 and not terminated and truncated and info["is_success"] is False
    made.close()


def test_sparse_reward_and_termination_at_the_goal(env):
    expert = PointMazeExpert(env, noise_std=0.0)
    episode = rollout_episode(env, expert, seed=0)
    assert episode["is_success"] and episode["terminations"][-1] and not any(episode["truncations"])
    assert episode["rewards"] == [0.0] * (len(episode["rewards"]) - 1) + [1.0]
    assert env.unwrapped.compute_reward(episode["observations"]["achieved_goal"][-1], env.unwrapped.goal, {}) == 1.0


def test_shortest_path_goes_round_the_u():
    path = shortest_path(pointmaze.POINTMAZE_UMAZE_FIXED, pointmaze.POINTMAZE_START_CELL, pointmaze.POINTMAZE_GOAL_CELL)
    assert path == [(3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    with pytest.raises(ValueError, match="cannot be reached"):
        shortest_path([[0, 1, 0]], (0, 0), (0, 2))


@pytest.mark.parametrize("noise", [{"noise_std": 0.0}, {}], ids=["clean", "default-noise"])
def test_expert_always_reaches_the_goal(env, noise):
    expert = PointMazeExpert(env, seed=1, **noise)
    episodes = [rollout_episode(env, expert, seed=seed) for seed in range(5)]
    assert all(episode["is_success"] and episode["terminations"][-1] for episode in episodes)
    assert max(len(episode["rewards"]) for episode in episodes) < pointmaze.POINTMAZE_MAX_EPISODE_STEPS / 2
    actions = np.concatenate([episode["actions"] for episode in episodes])
    assert env.action_space.contains(actions.max(axis=0)) and env.action_space.contains(actions.min(axis=0))


def test_wanderer_roams_but_never_finishes(env):
    wanderer = PointMazeWanderer(env, seed=0)
    assert pointmaze.POINTMAZE_GOAL_CELL not in wanderer.cells and pointmaze.POINTMAZE_START_CELL in wanderer.cells
    episode = rollout_episode(env, wanderer, seed=0)
    assert not episode["is_success"] and episode["truncations"][-1]
    cells = {wanderer._cell(xy) for xy in episode["observations"]["achieved_goal"]}
    assert len(cells) >= 3  # it travels, rather than sitting at the start


def test_mixture_of_experts_and_wanderers(env):
    episodes = POINTMAZE_RECIPE.record(env, n_episodes=6, expert_fraction=0.5, noise_std=0.3, seed=3)
    successes = [episode["is_success"] for episode in episodes]
    assert 0 < sum(successes) < 6  # both kinds (for this seed)
    again = POINTMAZE_RECIPE.record(env, n_episodes=6, expert_fraction=0.5, noise_std=0.3, seed=3)
    assert all(np.array_equal(a["actions"], b["actions"]) for a, b in zip(episodes, again))
    experts = POINTMAZE_RECIPE.record(env, 2, expert_fraction=1.0, noise_std=0.3, seed=3)
    assert all(episode["is_success"] for episode in experts)


def test_random_actions_do_not_reach_the_goal(env):
    env.action_space.seed(0)
    episodes = [rollout_episode(env, lambda obs: env.action_space.sample(), seed=seed) for seed in range(3)]
    assert not any(episode["is_success"] for episode in episodes)
    assert all(episode["truncations"][-1] and len(episode["rewards"]) == env.spec.max_episode_steps for episode in episodes)


def test_missing_robotics_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium_robotics.envs.maze.point_maze", None)
    with pytest.raises(ImportError, match=r'pip install "sb3_expo\[robotics\]"'):
        make_pointmaze_env()


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "minari"


def test_build_dataset_loads_and_is_reused(minari_root, env):
    dataset_id = "test/pointmaze-expert-v0"
    dataset = build_pointmaze_dataset(dataset_id, n_episodes=3, expert_fraction=1.0, seed=5)
    assert (minari_root / "test" / "pointmaze-expert-v0" / "data").is_dir()
    lengths = [len(episode.rewards) for episode in dataset.iterate_episodes()]
    assert dataset.total_episodes == 3 and dataset.total_steps == sum(lengths)

    data = load_minari(dataset_id)
    assert len(data) == sum(lengths)
    assert set(data.observations) == {"observation", "achieved_goal", "desired_goal"}
    assert data.observations["observation"].shape == (len(data), 4)
    goal_steps = np.cumsum(lengths) - 1  # every episode ends at the goal: a terminal with reward 1
    assert np.flatnonzero(data.terminals).tolist() == goal_steps.tolist()
    assert np.flatnonzero(data.rewards).tolist() == goal_steps.tolist()
    validate_against_env(data, env.observation_space, env.action_space)
    assert dataset.recover_environment().spec.id == POINTMAZE_ENV_ID

    again = build_pointmaze_dataset(dataset_id, n_episodes=3, seed=6)  # reused, not rebuilt
    assert np.array_equal(load_minari(again).actions, data.actions)
    with pytest.warns(UserWarning, match="overwrite=True"):
        build_pointmaze_dataset(dataset_id, n_episodes=2)
    rebuilt = build_pointmaze_dataset(dataset_id, n_episodes=2, overwrite=True)
    assert rebuilt.total_episodes == 2
    with pytest.raises(ValueError, match="expert_fraction"):
        build_pointmaze_dataset(dataset_id, expert_fraction=1.5)


# ------------------------------------------------------------------------------------ the large maze


@pytest.fixture(scope="module")
def large_env():
    env = make_pointmaze_large_env()
    yield env
    env.close()


def test_large_maze_fixed_start_goal_and_long_path(large_env):
    large = (pointmaze.POINTMAZE_LARGE_FIXED, pointmaze.POINTMAZE_LARGE_START_CELL, pointmaze.POINTMAZE_LARGE_GOAL_CELL)
    path = shortest_path(*large)
    assert len(path) == 15 and path[0] == (1, 1) and path[-1] == (7, 9)
    # the map is Gymnasium-Robotics' large maze with a start and a goal marked
    plain = [[0 if cell in ("r", "g") else cell for cell in row] for row in pointmaze.POINTMAZE_LARGE_FIXED]
    assert plain == maps.LARGE_MAZE
    start = cell_centre(large_env, pointmaze.POINTMAZE_LARGE_START_CELL)
    goal = cell_centre(large_env, pointmaze.POINTMAZE_LARGE_GOAL_CELL)
    for seed in range(3):
        obs, _ = large_env.reset(seed=seed)
        assert np.abs(obs["achieved_goal"] - start).max() <= CELL_NOISE
        assert np.abs(obs["desired_goal"] - goal).max() <= CELL_NOISE
    assert large_env.spec.id == POINTMAZE_LARGE_ENV_ID
    assert large_env.spec.max_episode_steps == pointmaze.POINTMAZE_LARGE_MAX_EPISODE_STEPS


def test_large_maze_noisy_expert_beats_random(large_env):
    expert = PointMazeExpert(large_env, noise_std=LARGE_NOISE_STD, seed=0)
    episodes = [rollout_episode(large_env, expert, seed=seed) for seed in range(3)]
    assert all(episode["is_success"] and episode["rewards"][-1] == 1.0 for episode in episodes)
    # the time limit leaves the noisy expert 1.5-2x the steps it needs
    assert all(1.5 <= pointmaze.POINTMAZE_LARGE_MAX_EPISODE_STEPS / len(episode["rewards"]) <= 2.0 for episode in episodes)
    random_policy = RandomController(large_env.action_space, seed=0)
    assert not any(rollout_episode(large_env, random_policy, seed=seed)["is_success"] for seed in range(2))


def test_large_maze_wanderer_stays_short_of_the_goal(large_env):
    wanderer = PointMazeWanderer(large_env, noise_std=LARGE_NOISE_STD, seed=0)
    # (7, 10) is a dead end behind the goal: heading there would cross the goal and end the episode
    assert (7, 10) not in wanderer.cells and pointmaze.POINTMAZE_LARGE_GOAL_CELL not in wanderer.cells
    assert wanderer.cells == cells_short_of_goal(pointmaze.POINTMAZE_LARGE_FIXED) and len(wanderer.cells) == 44
    episode = rollout_episode(large_env, wanderer, seed=0)
    assert not episode["is_success"] and episode["truncations"][-1]
    assert cells_short_of_goal([[1, 1, 1], [0, "g", 0]]) == [(1, 0), (1, 2)]  # no reset cell: every free cell


def test_build_large_dataset_and_cli(minari_root, large_env, capsys):
    dataset_id = "test/pointmaze-large-v0"
    dataset = build_pointmaze_large_dataset(dataset_id, n_episodes=3, expert_fraction=0.5, seed=0, check_episodes=2)
    assert "expert success rate 1.00" in dataset.storage.metadata["description"]
    data = load_minari(dataset_id)
    assert len(data) == dataset.total_steps and data.observations["observation"].shape == (len(data), 4)
    validate_against_env(data, large_env.observation_space, large_env.action_space)
    assert dataset.recover_environment().spec.id == POINTMAZE_LARGE_ENV_ID
    lengths = [len(episode.rewards) for episode in dataset.iterate_episodes()]
    successes = [bool(episode.terminations[-1]) for episode in dataset.iterate_episodes()]
    assert successes == [length < pointmaze.POINTMAZE_LARGE_MAX_EPISODE_STEPS for length in lengths] and any(successes)

    cli.main(["sb3_expo/pointmaze-large-noisy-v0", "--save-as", "test/pointmaze-large-cli-v0", "--n-episodes", "2"])
    assert "2 episodes" in capsys.readouterr().out
    assert minari.load_dataset("test/pointmaze-large-cli-v0").total_episodes == 2
    with pytest.raises(SystemExit, match="takes no --download"):  # an option the builder has no use for is refused
        cli.main(["sb3_expo/pointmaze-large-noisy-v0", "--download"])


def test_controller_check_refuses_a_bad_expert_or_an_easy_task(env):
    lazy = lambda obs: np.zeros(2, dtype=np.float32)  # noqa: E731
    with pytest.raises(RuntimeError, match="expert reaches the goal"):
        check_controllers(env, lazy, n_episodes=1, seed=0, min_expert_success=0.5, max_random_success=1.0)
    expert = PointMazeExpert(env, seed=0)
    with pytest.raises(RuntimeError, match="Random actions solve"):
        check_controllers(env, expert, n_episodes=1, seed=0, min_expert_success=0.5, max_random_success=-1.0)
    check = check_controllers(env, expert, n_episodes=2, seed=0, min_expert_success=0.5, max_random_success=0.0)
    assert check.expert_success_rate == 1.0 and check.random_success_rate == 0.0 and check.random_mean_return == 0.0
