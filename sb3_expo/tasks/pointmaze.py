"""
The PointMaze tasks with one start and one goal cell, and the mixed-quality offline datasets their
scripted controllers record, built locally (no download):

- :data:`POINTMAZE_ENV_ID`, the U-maze demo: :func:`make_pointmaze_env`, :func:`build_pointmaze_dataset`
  (:data:`POINTMAZE_DATASET_ID`, 200 episodes, 10% expert);
- :data:`POINTMAZE_LARGE_ENV_ID`, the large maze with a 15-cell path: :func:`make_pointmaze_large_env`,
  :func:`build_pointmaze_large_dataset` (:data:`POINTMAZE_LARGE_DATASET_ID`, small and noisy: 40
  episodes, a quarter of them the expert's with heavy action noise);
- :data:`POINTMAZE_MEDIUM_ENV_ID`, the medium maze with a 10-move path, a held-out task of the learning
  benchmark (nothing of EXPO's recipe was tuned on it): :func:`make_pointmaze_medium_env`,
  :func:`build_pointmaze_medium_dataset` (:data:`POINTMAZE_MEDIUM_DATASET_ID`).

The expert plans over maze cells (breadth-first search) and steers the ball with a PD controller, as
the D4RL maze datasets were collected, with Gaussian action noise on top; it always reaches the goal.
Alone it makes data that imitation solves outright, leaving nothing for online RL to show, so the
datasets mix in a wanderer (the same controller roaming between other cells), like D4RL's "diverse"
data that mostly does something else than the task.

``python -m sb3_expo.tasks sb3_expo/pointmaze-umaze-mixed-v1`` builds a dataset into ``$MINARI_DATASETS_PATH``.
MuJoCo and Gymnasium-Robotics are imported only when an environment is created: install them with
``pip install "sb3_expo[robotics]"``.
"""

import collections
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_expo.envs import IsSuccessInfo, import_robotics_dependency
from sb3_expo.tasks.recording import MixtureRecipe, MixtureSettings

# ------------------------------------------------------------------------------------------------ tasks

POINTMAZE_ENV_ID = "sb3_expo/PointMazeUMazeFixed-v0"

# Episode limit: the noisy expert reaches the goal in about 110-150 steps, random actions almost never do.
POINTMAZE_MAX_EPISODE_STEPS = 300

# Gymnasium-Robotics' U-maze (row 0 at the top) with ONE reset cell "r" and ONE goal cell "g": every
# episode starts in the lower-left arm and must go round the U to the upper-left arm (6 cells of path).
# The ball and the goal are still placed uniformly within +-0.25 of their cell centres.
POINTMAZE_UMAZE_FIXED: list[list[int | str]] = [
    [1, 1, 1, 1, 1],
    [1, "g", 0, 0, 1],
    [1, 1, 1, 0, 1],
    [1, "r", 0, 0, 1],
    [1, 1, 1, 1, 1],
]
POINTMAZE_START_CELL = (3, 1)
POINTMAZE_GOAL_CELL = (1, 1)

POINTMAZE_LARGE_ENV_ID = "sb3_expo/PointMazeLargeFixed-v0"

# Episode limit: the noisy expert needs about 275-295 steps (1.7-1.8x fewer), random actions never get there.
POINTMAZE_LARGE_MAX_EPISODE_STEPS = 500

# Gymnasium-Robotics' large maze (``maps.LARGE_MAZE``, as ``PointMaze_Large-v3``) with D4RL's AntMaze
# evaluation start "r" (top left) and goal "g" (bottom right): the shortest path has 15 cells and five
# turns, and branches into dead ends on the way.
POINTMAZE_LARGE_FIXED: list[list[int | str]] = [
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [1, "r", 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
    [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
    [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
    [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
    [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
    [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
    [1, 0, 0, 1, 0, 0, 0, 1, 0, "g", 0, 1],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
]
POINTMAZE_LARGE_START_CELL = (1, 1)
POINTMAZE_LARGE_GOAL_CELL = (7, 9)

POINTMAZE_MEDIUM_ENV_ID = "sb3_expo/PointMazeMediumFixed-v0"

# Episode limit: the noisy expert needs 175-210 steps (mean 193 over 50 episodes); 330 leaves it 1.7x that.
POINTMAZE_MEDIUM_MAX_EPISODE_STEPS = 330

# Gymnasium-Robotics' medium maze (``maps.MEDIUM_MAZE``, as ``PointMaze_Medium-v3``) with D4RL's AntMaze
# evaluation start "r" (top left) and goal "g" (bottom right), in opposite corners: the shortest path has 11
# cells (10 moves, six turns; no two cells of this maze are more than 11 moves apart) and passes the openings
# of a dead end at the top right and of a detour round the bottom left.
POINTMAZE_MEDIUM_FIXED: list[list[int | str]] = [
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, "r", 0, 1, 1, 0, 0, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 1, 0, 0, 0, 1, 1, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 0, 1, 0, 0, 1, 0, 1],
    [1, 0, 0, 0, 1, 0, "g", 1],
    [1, 1, 1, 1, 1, 1, 1, 1],
]
POINTMAZE_MEDIUM_START_CELL = (1, 1)
POINTMAZE_MEDIUM_GOAL_CELL = (6, 6)


def create_pointmaze(**kwargs: Any) -> gym.Env:
    """
    Entry point of :data:`POINTMAZE_ENV_ID`, :data:`POINTMAZE_MEDIUM_ENV_ID` and :data:`POINTMAZE_LARGE_ENV_ID`:
    Gymnasium-Robotics' ``PointMazeEnv`` with ``info["is_success"]``. Prefer :func:`make_pointmaze_env` or
    ``gym.make``, which add the time limit.

    :param kwargs: ``PointMazeEnv`` arguments (the registered ones fix the maze, sparse reward, termination)
    :return: the environment, without time limit
    """
    import_robotics_dependency("mujoco")
    point_maze = import_robotics_dependency("gymnasium_robotics.envs.maze.point_maze")
    return IsSuccessInfo(point_maze.PointMazeEnv(**kwargs))


def make_pointmaze_env(max_episode_steps: int = POINTMAZE_MAX_EPISODE_STEPS, **kwargs: Any) -> gym.Env:
    """
    The offline-to-online PointMaze task: ``PointMaze_UMaze-v3``'s maze and dynamics with a fixed start
    cell and goal cell, reward 1 on reaching the goal (within 0.45) and 0 otherwise, and termination
    there (``continuing_task=False``), so the return says whether and the episode length says how fast.
    Observations stay a Dict (``observation``, ``achieved_goal``, ``desired_goal``): use
    ``"MultiInputPolicy"``.

    :param max_episode_steps: time limit (truncation, not termination). The default leaves the expert
        about twice the steps it needs, while random actions practically never reach the goal
    :param kwargs: overrides of ``PointMazeEnv`` arguments (e.g. ``render_mode="rgb_array"``)
    :return: the environment, as ``gym.make(POINTMAZE_ENV_ID, max_episode_steps=...)``
    :raises ImportError: Gymnasium-Robotics or MuJoCo is not installed (the message names the extra)
    """
    return gym.make(POINTMAZE_ENV_ID, max_episode_steps=max_episode_steps, **kwargs)


def make_pointmaze_large_env(max_episode_steps: int = POINTMAZE_LARGE_MAX_EPISODE_STEPS, **kwargs: Any) -> gym.Env:
    """
    The long-horizon PointMaze task: ``PointMaze_Large-v3``'s maze and dynamics with one start cell
    (top left) and one goal cell (bottom right, 15 cells of path away), reward 1 on reaching the goal
    and 0 otherwise, and termination there, as :func:`make_pointmaze_env`. Dict observations: use
    ``"MultiInputPolicy"``.

    :param max_episode_steps: time limit (truncation). The default leaves the noisy expert about 1.7x
        the steps it needs
    :param kwargs: overrides of ``PointMazeEnv`` arguments (e.g. ``render_mode="rgb_array"``)
    :return: the environment, as ``gym.make(POINTMAZE_LARGE_ENV_ID, max_episode_steps=...)``
    :raises ImportError: Gymnasium-Robotics or MuJoCo is not installed (the message names the extra)
    """
    return gym.make(POINTMAZE_LARGE_ENV_ID, max_episode_steps=max_episode_steps, **kwargs)


def make_pointmaze_medium_env(max_episode_steps: int = POINTMAZE_MEDIUM_MAX_EPISODE_STEPS, **kwargs: Any) -> gym.Env:
    """
    The held-out PointMaze task: ``PointMaze_Medium-v3``'s maze and dynamics with one start cell (top
    left) and one goal cell (bottom right, 10 moves of path away), reward 1 on reaching the goal and 0
    otherwise, and termination there, as :func:`make_pointmaze_env`. Dict observations: use
    ``"MultiInputPolicy"``.

    :param max_episode_steps: time limit (truncation). The default leaves the noisy expert about 1.7x
        the steps it needs
    :param kwargs: overrides of ``PointMazeEnv`` arguments (e.g. ``render_mode="rgb_array"``)
    :return: the environment, as ``gym.make(POINTMAZE_MEDIUM_ENV_ID, max_episode_steps=...)``
    :raises ImportError: Gymnasium-Robotics or MuJoCo is not installed (the message names the extra)
    """
    return gym.make(POINTMAZE_MEDIUM_ENV_ID, max_episode_steps=max_episode_steps, **kwargs)


# ---------------------------------------------------------------------------------------- offline datasets

# v1: 10% expert episodes (v0 had 30%, with which imitation alone already reached the goal 60-80% of the time).
POINTMAZE_DATASET_ID = "sb3_expo/pointmaze-umaze-mixed-v1"
DEFAULT_N_EPISODES = 200
DEFAULT_EXPERT_FRACTION = 0.1
DEFAULT_NOISE_STD = 0.3

POINTMAZE_LARGE_DATASET_ID = "sb3_expo/pointmaze-large-noisy-v0"
LARGE_N_EPISODES = 40
LARGE_EXPERT_FRACTION = 0.25
LARGE_NOISE_STD = 1.0

POINTMAZE_MEDIUM_DATASET_ID = "sb3_expo/pointmaze-medium-noisy-v0"
MEDIUM_N_EPISODES = 100
MEDIUM_EXPERT_FRACTION = 0.4
MEDIUM_NOISE_STD = 1.0

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


def _maze_recipe(make_env: Callable[[], gym.Env], builder: str, defaults: MixtureSettings) -> MixtureRecipe:
    """The dataset recipe of one maze: the expert and the wanderer, the checks, the metadata."""
    return MixtureRecipe(
        make_env=make_env,
        expert=PointMazeExpert,
        other=PointMazeWanderer,
        defaults=defaults,
        min_expert_success=MIN_EXPERT_SUCCESS,
        max_random_success=MAX_RANDOM_SUCCESS,
        # random actions practically never reach the goal; 1 is the sparse return of an episode that does
        ref_scores=lambda check: (0.0, 1.0),
        code_permalink=f"{__name__}.{builder}",
        task="fixed start and goal cells, sparse reward 1 and termination at the goal",
        expert_does="a breadth-first-search + PD controller that goes to the goal",
        other_does="the same controller roaming between random other cells",
    )


POINTMAZE_RECIPE = _maze_recipe(
    make_pointmaze_env,
    "build_pointmaze_dataset",
    MixtureSettings(DEFAULT_N_EPISODES, DEFAULT_EXPERT_FRACTION, DEFAULT_NOISE_STD, check_episodes=DEFAULT_CHECK_EPISODES),
)
POINTMAZE_LARGE_RECIPE = _maze_recipe(
    make_pointmaze_large_env,
    "build_pointmaze_large_dataset",
    MixtureSettings(LARGE_N_EPISODES, LARGE_EXPERT_FRACTION, LARGE_NOISE_STD, check_episodes=DEFAULT_CHECK_EPISODES),
)
POINTMAZE_MEDIUM_RECIPE = _maze_recipe(
    make_pointmaze_medium_env,
    "build_pointmaze_medium_dataset",
    MixtureSettings(MEDIUM_N_EPISODES, MEDIUM_EXPERT_FRACTION, MEDIUM_NOISE_STD, check_episodes=DEFAULT_CHECK_EPISODES),
)


def build_pointmaze_dataset(dataset_id: str = POINTMAZE_DATASET_ID, overwrite: bool = False, **settings: Any) -> Any:
    """
    Record a mixed-quality offline dataset on :data:`POINTMAZE_ENV_ID` as a local Minari
    dataset, so the offline-to-online example needs no download: ``expert_fraction`` of the episodes
    come from :class:`PointMazeExpert` (they reach the goal in 110-150 steps), the rest from
    :class:`PointMazeWanderer` (they roam the maze until the time limit). Imitating this data gives a
    policy that rarely reaches the goal in time; the expert episodes show the critic the way.

    The dataset lives under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``) and loads with
    ``sb3_expo.data.load_minari(dataset_id)``; its ``env_spec`` recreates the task
    (``dataset.recover_environment()``). Each episode ends at the goal (a terminal with reward 1) or at
    the time limit (a truncation).

    :param dataset_id: Minari id to write (``namespace/name-vN``)
    :param overwrite: rebuild the dataset if ``dataset_id`` exists; otherwise the existing one is reused
        (with a warning if its number of episodes differs)
    :param settings: :class:`~sb3_expo.tasks.recording.MixtureSettings` fields that differ from
        ``POINTMAZE_RECIPE.defaults``: ``n_episodes`` (200: about 50k transitions, recorded in seconds),
        ``expert_fraction`` (0.1; 1 records expert data only), ``noise_std`` (0.3; on unsaturated actions
        it perturbs the paths, and the expert's success stays at 100% up to at least 0.5), ``seed`` (0:
        episode ``i`` resets with ``seed + i``, and the controllers are seeded from it) and
        ``check_episodes`` (10: before recording, the noisy expert and random actions run this many
        episodes each, and the build stops unless the expert succeeds in at least
        :data:`MIN_EXPERT_SUCCESS` of them and random actions in at most :data:`MAX_RANDOM_SUCCESS`)
    :return: the ``minari.MinariDataset``
    :raises ImportError: Minari, Gymnasium-Robotics or MuJoCo is not installed
    :raises RuntimeError: the check failed (nothing is written)
    """
    return POINTMAZE_RECIPE.build(dataset_id, overwrite, **settings)


def build_pointmaze_large_dataset(
    dataset_id: str = POINTMAZE_LARGE_DATASET_ID, overwrite: bool = False, **settings: Any
) -> Any:
    """
    Record the small, noisy offline dataset of :data:`POINTMAZE_LARGE_ENV_ID` (the large
    maze, 15 cells of path from start to goal) as a local Minari dataset: by default 40 episodes, each
    the :class:`PointMazeExpert`'s with probability 0.25 (about 285 steps to the goal) and otherwise the
    :class:`PointMazeWanderer`'s (roaming until the 500-step limit), both with action noise of std 1
    (the controller's actions are mostly saturated, so even this noise bends the paths rather than
    breaking them: the expert still always arrives). The data holds a handful of successful paths
    among many that lead elsewhere: a behaviour-cloning MLP trained on all of it reached the goal in
    about 5% of episodes, one trained on its successful episodes alone in about 90%. The arguments,
    the checks and the result are those of :func:`build_pointmaze_dataset`.
    """
    return POINTMAZE_LARGE_RECIPE.build(dataset_id, overwrite, **settings)


def build_pointmaze_medium_dataset(
    dataset_id: str = POINTMAZE_MEDIUM_DATASET_ID, overwrite: bool = False, **settings: Any
) -> Any:
    """
    Record the noisy offline dataset of :data:`POINTMAZE_MEDIUM_ENV_ID` (the medium maze, 10 moves
    from start to goal) as a local Minari dataset: by default 100 episodes (about 28k transitions), each the
    :class:`PointMazeExpert`'s with probability 0.4 (about 195 steps
    to the goal) and otherwise the :class:`PointMazeWanderer`'s (roaming until the 330-step limit), both
    with action noise of std 1 (which bends the expert's paths without stopping it: it still always
    arrives). The benchmark's diffusion base imitating all of it reached the goal in 5-15% of episodes
    after 10k steps (3 seeds), never after 3000. The arguments, the checks and the result are those of
    :func:`build_pointmaze_dataset`.
    """
    return POINTMAZE_MEDIUM_RECIPE.build(dataset_id, overwrite, **settings)


_MAZE_KWARGS = dict(reward_type="sparse", continuing_task=False, reset_target=False)
# The gymnasium ids of this family (sb3_expo.tasks registers them).
ENV_REGISTRATIONS = [
    dict(
        id=POINTMAZE_ENV_ID,
        entry_point=f"{__name__}:create_pointmaze",
        max_episode_steps=POINTMAZE_MAX_EPISODE_STEPS,
        kwargs=dict(maze_map=POINTMAZE_UMAZE_FIXED, **_MAZE_KWARGS),
    ),
    dict(
        id=POINTMAZE_LARGE_ENV_ID,
        entry_point=f"{__name__}:create_pointmaze",
        max_episode_steps=POINTMAZE_LARGE_MAX_EPISODE_STEPS,
        kwargs=dict(maze_map=POINTMAZE_LARGE_FIXED, **_MAZE_KWARGS),
    ),
    dict(
        id=POINTMAZE_MEDIUM_ENV_ID,
        entry_point=f"{__name__}:create_pointmaze",
        max_episode_steps=POINTMAZE_MEDIUM_MAX_EPISODE_STEPS,
        kwargs=dict(maze_map=POINTMAZE_MEDIUM_FIXED, **_MAZE_KWARGS),
    ),
]
# The datasets built locally: id -> builder.
LOCAL_DATASETS = {
    POINTMAZE_DATASET_ID: build_pointmaze_dataset,
    POINTMAZE_LARGE_DATASET_ID: build_pointmaze_large_dataset,
    POINTMAZE_MEDIUM_DATASET_ID: build_pointmaze_medium_dataset,
}
