"""
Task environments whose offline data is built locally: PointMazes with a fixed start and goal and a
sparse goal reward (the U-maze demo and a large maze), FetchPush ended at success, and the wrappers the
paper's task families need (success flags, AntMaze's end at the goal, Adroit's binary reward; those
tasks themselves are registered in :mod:`sb3_expo.tasks`).

Importing this module registers :data:`POINTMAZE_ENV_ID`, :data:`POINTMAZE_LARGE_ENV_ID` and
:data:`FETCHPUSH_ENV_ID` with gymnasium (``gym.make`` and Minari's ``env_spec`` then recreate the task
by id). MuJoCo and Gymnasium-Robotics are imported only when the
environment is created: install them with ``pip install "sb3_expo[robotics]"``.
"""

from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_expo.optional import import_optional

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

FETCHPUSH_ENV_ID = "sb3_expo/FetchPushTerminal-v0"

# FetchPush's own limit; the noisy expert needs about 25 steps.
FETCHPUSH_MAX_EPISODE_STEPS = 50

# Least distance from the block to the goal at reset (FetchPush counts 5 cm as reached): every episode
# needs a real push, not a nudge (in 22% of FetchPush's resets the block starts nearer).
FETCHPUSH_MIN_GOAL_DISTANCE = 0.1


def import_robotics_dependency(name: str = "gymnasium_robotics") -> ModuleType:
    """Import a package of the ``robotics`` extra (``gymnasium_robotics``, ``mujoco``), or explain how to install it."""
    return import_optional(name, "robotics")


class IsSuccessInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """
    Copy the environment's ``info["success"]`` into ``info["is_success"]``, the key SB3 reads at the end
    of an episode to log ``rollout/success_rate`` (and that ``EvalCallback`` reports).

    :param env: an environment whose ``info`` has a boolean ``"success"`` entry (Gymnasium-Robotics mazes)
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "is_success": bool(info.get("success", False))}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward), terminated, truncated, {**info, "is_success": bool(info.get("success", False))}


def create_pointmaze(**kwargs: Any) -> gym.Env:
    """
    Entry point of :data:`POINTMAZE_ENV_ID` and :data:`POINTMAZE_LARGE_ENV_ID`: Gymnasium-Robotics' ``PointMazeEnv`` with
    ``info["is_success"]``. Prefer :func:`make_pointmaze_env` or ``gym.make``, which add the time limit.

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


class GoalEnvSuccess(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """
    For Gymnasium-Robotics' goal environments that report ``info["is_success"]`` as a float (Fetch):
    a boolean ``info["is_success"]`` and ``info["success"]`` (the key :class:`TerminateOnSuccess`
    reads) at every step and at reset, and no episode that starts with its goal already achieved, or
    nearer than ``min_goal_distance``: the env is reset again, from its own generator, until it does
    not. (Fetch samples the goal independently of the block: 8% of FetchPush's episodes start solved.)

    :param env: a goal environment with ``_is_success(achieved_goal, desired_goal)``
    :param min_goal_distance: least distance between ``achieved_goal`` and ``desired_goal`` at reset
    :param max_resets: give up (and keep the last reset) after this many resets
    """

    def __init__(self, env: gym.Env, min_goal_distance: float = 0.0, max_resets: int = 100):
        gym.utils.RecordConstructorArgs.__init__(self, min_goal_distance=min_goal_distance, max_resets=max_resets)
        gym.Wrapper.__init__(self, env)
        self.min_goal_distance, self.max_resets = min_goal_distance, max_resets

    def _too_close(self, obs: dict[str, np.ndarray]) -> bool:
        achieved, desired = obs["achieved_goal"], obs["desired_goal"]
        if np.linalg.norm(achieved - desired) < self.min_goal_distance:
            return True
        return bool(self.env.unwrapped._is_success(achieved, desired))  # type: ignore[attr-defined]

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        kwargs.pop("seed", None)
        for _ in range(self.max_resets - 1):
            if not self._too_close(obs):
                break
            obs, info = self.env.reset(**kwargs)
        return obs, {**info, "success": False, "is_success": False}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        success = bool(info.get("is_success", False))
        return obs, float(reward), terminated, truncated, {**info, "success": success, "is_success": success}


def create_fetchpush(min_goal_distance: float = FETCHPUSH_MIN_GOAL_DISTANCE, **kwargs: Any) -> gym.Env:
    """
    Entry point of :data:`FETCHPUSH_ENV_ID`: Gymnasium-Robotics' ``FetchPush`` (``FetchPush-v4``'s
    MuJoCo env) with a boolean ``info["is_success"]``, the block at least ``min_goal_distance`` from
    the goal at reset (:class:`GoalEnvSuccess`) and termination at success
    (:class:`TerminateOnSuccess`). Prefer :func:`make_fetchpush_env` or ``gym.make``, which add the
    time limit.

    :param min_goal_distance: least distance from the block to the goal at reset
    :param kwargs: ``MujocoFetchPushEnv`` arguments (the registered one keeps the sparse reward)
    :return: the environment, without time limit
    """
    import_robotics_dependency("mujoco")
    push = import_robotics_dependency("gymnasium_robotics.envs.fetch.push")
    return TerminateOnSuccess(GoalEnvSuccess(push.MujocoFetchPushEnv(**kwargs), min_goal_distance=min_goal_distance))


def make_fetchpush_env(max_episode_steps: int = FETCHPUSH_MAX_EPISODE_STEPS, **kwargs: Any) -> gym.Env:
    """
    The sparse-reward manipulation task: FetchPush (push a block on a table to a goal position with
    the closed gripper; 4-D action, the gripper's displacement and an ignored finger command), its
    sparse reward (-1 per step, 0 once the block is within 5 cm of the goal) and the episode ended
    there, so the return is minus the steps taken. The block starts at least 10 cm from the goal
    (FetchPush alone would start some episodes already solved). Dict observations (``observation`` has 25 entries,
    ``achieved_goal`` and ``desired_goal`` 3 each): use ``"MultiInputPolicy"``.

    :param max_episode_steps: time limit (truncation); FetchPush's own 50 by default
    :param kwargs: overrides of ``MujocoFetchPushEnv`` arguments (e.g. ``render_mode="rgb_array"``)
    :return: the environment, as ``gym.make(FETCHPUSH_ENV_ID, max_episode_steps=...)``
    :raises ImportError: Gymnasium-Robotics or MuJoCo is not installed (the message names the extra)
    """
    return gym.make(FETCHPUSH_ENV_ID, max_episode_steps=max_episode_steps, **kwargs)


def register_envs() -> None:
    """Register this module's task ids with gymnasium, once (importing this module twice is harmless)."""
    maze_kwargs = dict(reward_type="sparse", continuing_task=False, reset_target=False)
    tasks = [  # (id, entry point, time limit, entry-point kwargs)
        (
            POINTMAZE_ENV_ID,
            "create_pointmaze",
            POINTMAZE_MAX_EPISODE_STEPS,
            dict(maze_map=POINTMAZE_UMAZE_FIXED, **maze_kwargs),
        ),
        (
            POINTMAZE_LARGE_ENV_ID,
            "create_pointmaze",
            POINTMAZE_LARGE_MAX_EPISODE_STEPS,
            dict(maze_map=POINTMAZE_LARGE_FIXED, **maze_kwargs),
        ),
        (
            FETCHPUSH_ENV_ID,
            "create_fetchpush",
            FETCHPUSH_MAX_EPISODE_STEPS,
            dict(reward_type="sparse", min_goal_distance=FETCHPUSH_MIN_GOAL_DISTANCE),
        ),
    ]
    for env_id, entry_point, max_episode_steps, kwargs in tasks:
        if env_id not in gym.registry:
            gym.register(
                id=env_id, entry_point=f"{__name__}:{entry_point}", max_episode_steps=max_episode_steps, kwargs=kwargs
            )


# ------------------------------------------------------------------------------ wrappers of the paper's tasks


class TerminateOnSuccess(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """
    End the episode (``terminated=True``) at the first step whose ``info["success"]`` is true.

    D4RL's AntMaze evaluation env ends an episode when the ant reaches the goal, so an episode's
    success is its outcome. Gymnasium-Robotics' mazes recreated by Minari are continuing tasks
    (``continuing_task=True``) that never terminate: without this wrapper an ant that reaches the goal
    and walks on counts as a failure at the time limit, and the return counts steps at the goal.

    :param env: an environment whose ``info`` has a boolean ``"success"`` entry
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or bool(info.get("success", False)), truncated, info


class AdroitBinaryReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """
    The binary Adroit tasks of Cal-QL / RLPD (``pen-binary``, ``door-binary``, ``relocate-binary``):
    the reward is 0 at steps where the goal is achieved (``info["success"]``) and -1 otherwise, in
    place of the env's dense shaped reward.

    ``info["is_success"]`` (SB3's ``rollout/success_rate``, ``eval/success_rate``) follows the
    Adroit success criterion of DAPG / D4RL: an episode succeeds when the goal was achieved on more than
    ``min_success_steps`` of its steps (20 for pen, 25 for door and relocate).

    :param env: a Gymnasium-Robotics Adroit hand environment (``AdroitHandPen-v1``, ...)
    :param min_success_steps: the episode succeeds once the goal was achieved on more than this many steps
    """

    def __init__(self, env: gym.Env, min_success_steps: int = 20):
        gym.utils.RecordConstructorArgs.__init__(self, min_success_steps=min_success_steps)
        gym.Wrapper.__init__(self, env)
        self.min_success_steps = min_success_steps
        self._success_steps = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._success_steps = 0
        return obs, {**info, "is_success": False}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(action)
        success = bool(info.get("success", False))
        self._success_steps += int(success)
        is_success = self._success_steps > self.min_success_steps
        return obs, binary_reward(success), terminated, truncated, {**info, "is_success": is_success}


def binary_reward(success: Any) -> Any:
    """The binary Adroit reward: 0 where the goal is achieved, -1 elsewhere (scalars or arrays)."""
    return np.asarray(success, dtype=np.float32) - 1.0 if isinstance(success, np.ndarray) else float(bool(success)) - 1.0


register_envs()
