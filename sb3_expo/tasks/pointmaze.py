"""
Scripted PointMaze controllers and the mixed-quality offline datasets they record, built locally (no download).

The expert plans over maze cells (breadth-first search) and steers the ball with a PD controller, as
the D4RL maze datasets were collected, with Gaussian action noise on top; it always reaches the goal.
Alone it makes data that imitation solves outright, leaving nothing for online RL to show, so the
datasets mix in a wanderer (the same controller roaming between other cells), like D4RL's "diverse"
data that mostly does something else than the task. Two tasks use them:

- :data:`~sb3_expo.envs.POINTMAZE_ENV_ID`, the U-maze demo: :func:`build_pointmaze_dataset`
  (:data:`POINTMAZE_DATASET_ID`, 200 episodes, 10% expert);
- :data:`~sb3_expo.envs.POINTMAZE_LARGE_ENV_ID`, the large maze with a 15-cell path:
  :func:`build_pointmaze_large_dataset` (:data:`POINTMAZE_LARGE_DATASET_ID`, small and noisy: 40
  episodes, a quarter of them the expert's with heavy action noise).

``python -m sb3_expo.data.pointmaze [--maze large]`` builds a dataset into ``$MINARI_DATASETS_PATH``.
"""

import argparse
import collections
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_expo.data.recording import (
    ControllerCheck,
    build_checked_dataset,
    check_controllers,
    load_existing_dataset,
    record_mixture,
    rollout_episode,
)
from sb3_expo.envs import POINTMAZE_ENV_ID, POINTMAZE_LARGE_ENV_ID, make_pointmaze_env, make_pointmaze_large_env

__all__ = [
    "POINTMAZE_DATASET_ID",
    "POINTMAZE_LARGE_DATASET_ID",
    "PointMazeExpert",
    "PointMazeWanderer",
    "build_pointmaze_dataset",
    "build_pointmaze_large_dataset",
    "cells_short_of_goal",
    "check_pointmaze_controllers",
    "record_episodes",
    "rollout_episode",
    "shortest_path",
]

# v1: 10% expert episodes (v0 had 30%, with which imitation alone already reached the goal 60-80% of the time).
POINTMAZE_DATASET_ID = "sb3_expo/pointmaze-umaze-mixed-v1"
DEFAULT_N_EPISODES = 200
DEFAULT_EXPERT_FRACTION = 0.1
DEFAULT_NOISE_STD = 0.3

POINTMAZE_LARGE_DATASET_ID = "sb3_expo/pointmaze-large-noisy-v0"
LARGE_N_EPISODES = 40
LARGE_EXPERT_FRACTION = 0.25
LARGE_NOISE_STD = 1.0

# Before writing a dataset, the builders run the expert and uniformly random actions for this many
# episodes each and refuse a task the expert solves less often than MIN_EXPERT_SUCCESS, or random
# actions more often than MAX_RANDOM_SUCCESS.
DEFAULT_CHECK_EPISODES = 10
MIN_EXPERT_SUCCESS = 0.9
MAX_RANDOM_SUCCESS = 0.1

Cell = tuple[int, int]


def shortest_path(maze_map: list[list[Any]], start: Cell, goal: Cell) -> list[Cell]:
    """
    Breadth-first search over the free cells of a maze (every cell that is not a wall ``1``), moving
    between edge neighbours, because the ball cannot squeeze diagonally past a wall corner.

    :param maze_map: Gymnasium-Robotics maze map, row 0 at the top
    :param start: ``(row, column)`` of the first cell
    :param goal: ``(row, column)`` of the last cell
    :return: the cells from ``start`` to ``goal``, both included
    :raises ValueError: the goal cannot be reached from the start
    """
    parents: dict[Cell, Cell | None] = {start: None}
    queue = collections.deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        for step in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            row, column = cell[0] + step[0], cell[1] + step[1]
            if (row, column) not in parents and 0 <= row < len(maze_map) and 0 <= column < len(maze_map[row]):
                if maze_map[row][column] != 1:
                    parents[(row, column)] = cell
                    queue.append((row, column))
    if goal not in parents:
        raise ValueError(f"Maze cell {goal} cannot be reached from {start}")
    path = [goal]
    while parents[path[-1]] is not None:
        path.append(parents[path[-1]])  # type: ignore[arg-type]
    return path[::-1]


def cells_short_of_goal(maze_map: list[list[Any]]) -> list[Cell]:
    """
    The free cells other than goal cells ``"g"`` that can be reached from a reset cell ``"r"`` without
    crossing a goal cell (all free non-goal cells when the map has no reset cell), in row-major order.

    :param maze_map: Gymnasium-Robotics maze map, row 0 at the top
    :return: the ``(row, column)`` cells
    """
    free = [
        (row, column)
        for row in range(len(maze_map))
        for column in range(len(maze_map[row]))
        if maze_map[row][column] != 1 and maze_map[row][column] != "g"
    ]
    starts = [cell for cell in free if maze_map[cell[0]][cell[1]] == "r"]
    if not starts:
        return free
    allowed, reached = set(free), set(starts)
    queue = collections.deque(starts)
    while queue:
        cell = queue.popleft()
        for step in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            neighbour = (cell[0] + step[0], cell[1] + step[1])
            if neighbour in allowed and neighbour not in reached:
                reached.add(neighbour)
                queue.append(neighbour)
    return [cell for cell in free if cell in reached]


class PointMazeExpert:
    """
    Scripted PointMaze controller: follows the shortest cell path to the goal, steering with a PD
    controller towards the centre of the next cell on the path (towards the goal itself in the goal's
    cell), plus Gaussian action noise so that the offline data is diverse rather than one trajectory.

    :param env: a PointMaze environment (any wrapping); its maze and action bounds are read once
    :param noise_std: standard deviation of the Gaussian noise added to every action (before clipping);
        0 gives a deterministic controller
    :param p_gain: proportional gain on the distance to the waypoint (D4RL's controller used 10)
    :param d_gain: damping gain on the ball's velocity (D4RL used 1)
    :param seed: seed of the noise generator
    """

    def __init__(
        self,
        env: gym.Env,
        noise_std: float = DEFAULT_NOISE_STD,
        p_gain: float = 10.0,
        d_gain: float = 1.0,
        seed: int | None = None,
    ):
        self.maze = env.unwrapped.maze  # type: ignore[attr-defined]
        self.action_space = env.action_space
        self.noise_std, self.p_gain, self.d_gain = noise_std, p_gain, d_gain
        self.rng = np.random.default_rng(seed)

    def _cell(self, xy: np.ndarray) -> Cell:
        row, column = self.maze.cell_xy_to_rowcol(xy)
        return int(row), int(column)

    def target(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """Where the controller is going: the goal. Subclasses steer elsewhere."""
        return observation["desired_goal"]

    def waypoint(self, position: np.ndarray, target: np.ndarray) -> np.ndarray:
        """
        Where the ball should head now: the centre of the next cell on the shortest path, or the target
        itself once the ball is in the target's cell.

        :param position: the ball's ``(x, y)``
        :param target: the ``(x, y)`` to reach (the goal, for the expert)
        :return: the waypoint's ``(x, y)``
        """
        path = shortest_path(self.maze.maze_map, self._cell(position), self._cell(target))
        if len(path) == 1:
            return np.asarray(target, dtype=np.float64)
        return self.maze.cell_rowcol_to_xy(np.array(path[1]))

    def __call__(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """
        :param observation: one (not batched) PointMaze observation dict
        :return: the action, clipped to the action space
        """
        position, velocity = observation["achieved_goal"], observation["observation"][2:4]
        waypoint = self.waypoint(position, self.target(observation))
        action = self.p_gain * (waypoint - position) - self.d_gain * velocity
        if self.noise_std > 0:
            action = action + self.rng.normal(0.0, self.noise_std, size=action.shape)
        return np.clip(action, self.action_space.low, self.action_space.high).astype(self.action_space.dtype)


class PointMazeWanderer(PointMazeExpert):
    """
    Suboptimal data: the same controller, but it goes back and forth between random cells of the maze
    other than the goal's (a new one each time it gets within ``reach`` of the last), so it never
    finishes the task. When the maze has reset cells ``"r"`` it only heads for cells it can reach from
    them without crossing the goal cell (not, say, a dead end behind the goal). Mixed with expert
    episodes it makes every corridor state carry both directions of travel: imitation alone then
    dithers, and a learned Q-function is needed to pick the way to the goal.

    :param env: a PointMaze environment
    :param reach: distance to a cell centre that counts as arrived there
    :param kwargs: :class:`PointMazeExpert` arguments (``noise_std``, gains, ``seed``)
    """

    def __init__(self, env: gym.Env, reach: float = 0.3, **kwargs: Any):
        super().__init__(env, **kwargs)
        self.cells = cells_short_of_goal(self.maze.maze_map)
        self.reach = reach
        self._target: np.ndarray | None = None

    def target(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        position = observation["achieved_goal"]
        if self._target is None or np.linalg.norm(position - self._target) < self.reach:
            here = self._cell(position)
            choices = [cell for cell in self.cells if cell != here]
            self._target = self.maze.cell_rowcol_to_xy(np.array(choices[self.rng.integers(len(choices))]))
        return self._target


# Kept for code that imported them from here before they moved to sb3_expo.data.recording.
_load_existing = load_existing_dataset


def record_episodes(
    env: gym.Env, n_episodes: int, expert_fraction: float, noise_std: float, seed: int
) -> list[dict[str, Any]]:
    """
    Roll out a mix of :class:`PointMazeExpert` and :class:`PointMazeWanderer` episodes.

    :param env: the PointMaze task
    :param n_episodes: how many episodes
    :param expert_fraction: each episode is the expert's with this probability, else the wanderer's
    :param noise_std: action noise of both controllers
    :param seed: episode ``i`` resets with ``seed + i``; the controllers' generators derive from ``seed``
    :return: the episodes, as :func:`rollout_episode` returns them
    """
    expert = PointMazeExpert(env, noise_std=noise_std, seed=seed)
    wanderer = PointMazeWanderer(env, noise_std=noise_std, seed=seed + 1)
    return record_mixture(env, expert, wanderer, n_episodes, expert_fraction, seed)


def check_pointmaze_controllers(
    env: gym.Env, noise_std: float, seed: int, n_episodes: int = DEFAULT_CHECK_EPISODES
) -> ControllerCheck:
    """
    :func:`~sb3_expo.data.recording.check_controllers` for a PointMaze task: the noisy expert must
    reach the goal in at least :data:`MIN_EXPERT_SUCCESS` of ``n_episodes`` episodes, random actions
    in at most :data:`MAX_RANDOM_SUCCESS`.

    :raises RuntimeError: either is not so
    """
    expert = PointMazeExpert(env, noise_std=noise_std, seed=seed + 2)
    return check_controllers(env, expert, n_episodes, seed, MIN_EXPERT_SUCCESS, MAX_RANDOM_SUCCESS)


def _build_maze_dataset(
    make_env: Callable[[], gym.Env],
    env_id: str,
    dataset_id: str,
    n_episodes: int,
    expert_fraction: float,
    noise_std: float,
    seed: int,
    overwrite: bool,
    check_episodes: int,
    task: str,
) -> Any:
    if not 0.0 <= expert_fraction <= 1.0:
        raise ValueError(f"expert_fraction must be in [0, 1], got {expert_fraction}")

    def metadata(check: ControllerCheck, success_rate: float) -> dict[str, Any]:
        return dict(
            algorithm_name=f"PointMazeExpert/PointMazeWanderer(expert_fraction={expert_fraction}, noise_std={noise_std})",
            code_permalink=f"sb3_expo.data.pointmaze.{task}",
            ref_min_score=0.0,  # random actions practically never reach the goal
            ref_max_score=1.0,  # the sparse return of an episode that reaches it
            description=(
                f"{n_episodes} episodes on {env_id} (fixed start and goal cells, sparse reward 1 and termination at "
                f"the goal): a share {expert_fraction} by a breadth-first-search + PD controller that goes to the goal, "
                f"the rest by the same controller roaming between random other cells, both with Gaussian action noise "
                f"(std {noise_std}). Success rate of the episodes: {success_rate:.2f}. "
                f"Checked before recording: {check.summary()}."
            ),
        )

    return build_checked_dataset(
        dataset_id,
        n_episodes,
        overwrite,
        make_env,
        check=lambda env: check_pointmaze_controllers(env, noise_std, seed + n_episodes, check_episodes),
        record=lambda env: record_episodes(env, n_episodes, expert_fraction, noise_std, seed),
        seed=seed,
        metadata=metadata,
    )


def build_pointmaze_dataset(
    dataset_id: str = POINTMAZE_DATASET_ID,
    n_episodes: int = DEFAULT_N_EPISODES,
    expert_fraction: float = DEFAULT_EXPERT_FRACTION,
    noise_std: float = DEFAULT_NOISE_STD,
    seed: int = 0,
    overwrite: bool = False,
    check_episodes: int = DEFAULT_CHECK_EPISODES,
) -> Any:
    """
    Record a mixed-quality offline dataset on :data:`~sb3_expo.envs.POINTMAZE_ENV_ID` as a local Minari
    dataset, so the offline-to-online example needs no download: ``expert_fraction`` of the episodes
    come from :class:`PointMazeExpert` (they reach the goal in 110-150 steps), the rest from
    :class:`PointMazeWanderer` (they roam the maze until the time limit). Imitating this data gives a
    policy that rarely reaches the goal in time; the expert episodes show the critic the way.

    The dataset lives under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``) and loads with
    ``sb3_expo.data.load_minari(dataset_id)``; its ``env_spec`` recreates the task
    (``dataset.recover_environment()``). Each episode ends at the goal (a terminal with reward 1) or at
    the time limit (a truncation).

    :param dataset_id: Minari id to write (``namespace/name-vN``)
    :param n_episodes: episodes to record (the default 200 is about 50k transitions and takes seconds)
    :param expert_fraction: probability that an episode is the expert's; 1 records expert data only
    :param noise_std: Gaussian action noise of both controllers (on unsaturated actions it perturbs the
        paths; the expert's success stays at 100% up to at least 0.5)
    :param seed: episode ``i`` resets with ``seed + i``; the choice of controller and their noise are
        seeded from ``seed`` too
    :param overwrite: rebuild the dataset if ``dataset_id`` exists; otherwise the existing one is reused
        (with a warning if its number of episodes differs)
    :param check_episodes: before recording, the noisy expert and random actions run this many episodes
        each (starts the dataset does not use); the build stops unless the expert succeeds in at least
        :data:`MIN_EXPERT_SUCCESS` of them and random actions in at most :data:`MAX_RANDOM_SUCCESS`
    :return: the ``minari.MinariDataset``
    :raises ImportError: Minari, Gymnasium-Robotics or MuJoCo is not installed
    :raises RuntimeError: the check failed (nothing is written)
    """
    return _build_maze_dataset(
        make_pointmaze_env,
        POINTMAZE_ENV_ID,
        dataset_id,
        n_episodes,
        expert_fraction,
        noise_std,
        seed,
        overwrite,
        check_episodes,
        "build_pointmaze_dataset",
    )


def build_pointmaze_large_dataset(
    dataset_id: str = POINTMAZE_LARGE_DATASET_ID,
    n_episodes: int = LARGE_N_EPISODES,
    expert_fraction: float = LARGE_EXPERT_FRACTION,
    noise_std: float = LARGE_NOISE_STD,
    seed: int = 0,
    overwrite: bool = False,
    check_episodes: int = DEFAULT_CHECK_EPISODES,
) -> Any:
    """
    Record the small, noisy offline dataset of :data:`~sb3_expo.envs.POINTMAZE_LARGE_ENV_ID` (the large
    maze, 15 cells of path from start to goal) as a local Minari dataset: by default 40 episodes, each
    the :class:`PointMazeExpert`'s with probability 0.25 (about 285 steps to the goal) and otherwise the
    :class:`PointMazeWanderer`'s (roaming until the 500-step limit), both with action noise of std 1
    (the controller's actions are mostly saturated, so even this noise bends the paths rather than
    breaking them: the expert still always arrives). The data holds a handful of successful paths
    among many that lead elsewhere: a behaviour-cloning MLP trained on all of it reached the goal in
    about 5% of episodes, one trained on its successful episodes alone in about 90%. The arguments,
    the checks and the result are those of :func:`build_pointmaze_dataset`.
    """
    return _build_maze_dataset(
        make_pointmaze_large_env,
        POINTMAZE_LARGE_ENV_ID,
        dataset_id,
        n_episodes,
        expert_fraction,
        noise_std,
        seed,
        overwrite,
        check_episodes,
        "build_pointmaze_large_dataset",
    )


MAZES = {
    "umaze": (build_pointmaze_dataset, POINTMAZE_DATASET_ID),
    "large": (build_pointmaze_large_dataset, POINTMAZE_LARGE_DATASET_ID),
}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build a PointMaze mixed-quality Minari dataset locally, into $MINARI_DATASETS_PATH (no download)."
    )
    parser.add_argument("--maze", choices=sorted(MAZES), default="umaze", help="which task's dataset (default umaze)")
    parser.add_argument("--dataset-id", help="Minari id (default: the maze's dataset id)")
    parser.add_argument("--n-episodes", type=int, help="default: the maze's (200 umaze, 40 large)")
    parser.add_argument("--expert-fraction", type=float, help="default: the maze's (0.3 umaze, 0.25 large)")
    parser.add_argument("--noise-std", type=float, help="default: the maze's (0.3 umaze, 1.0 large)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="rebuild the dataset if it exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """
    Command line: build (or reuse) the dataset, then print where it lives and how well the data's
    episodes did.

    :param argv: arguments (default ``sys.argv[1:]``)
    """
    args = _parse_args(argv)
    builder, default_id = MAZES[args.maze]
    options = dict(n_episodes=args.n_episodes, expert_fraction=args.expert_fraction, noise_std=args.noise_std)
    start = time.perf_counter()
    dataset = builder(
        args.dataset_id or default_id,
        seed=args.seed,
        overwrite=args.overwrite,
        **{key: value for key, value in options.items() if value is not None},
    )
    episodes = list(dataset.iterate_episodes())
    success_rate = np.mean([bool(episode.terminations[-1]) for episode in episodes])
    from minari.storage.datasets_root_dir import get_dataset_path

    print(f"Dataset '{dataset.id}' at {get_dataset_path(dataset.id)} ({time.perf_counter() - start:.1f} s)")
    print(f"{dataset.total_episodes} episodes, {dataset.total_steps} transitions")
    mean_length = dataset.total_steps / dataset.total_episodes
    print(f"Success rate of the episodes: {success_rate:.2f}, mean episode length {mean_length:.1f}")


if __name__ == "__main__":
    main()
