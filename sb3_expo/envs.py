"""
Task environments for the examples: a PointMaze with a fixed start and goal and a sparse goal reward.

Importing this module registers :data:`POINTMAZE_ENV_ID` with gymnasium (``gym.make`` and Minari's
``env_spec`` then recreate the task by id). MuJoCo and Gymnasium-Robotics are imported only when the
environment is created: install them with ``pip install "sb3_expo[robotics]"``.
"""

from types import ModuleType
from typing import Any

import gymnasium as gym

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
    Entry point of :data:`POINTMAZE_ENV_ID`: Gymnasium-Robotics' ``PointMazeEnv`` with
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


def register_envs() -> None:
    """Register :data:`POINTMAZE_ENV_ID` with gymnasium, once (importing this module twice is harmless)."""
    if POINTMAZE_ENV_ID in gym.registry:
        return
    gym.register(
        id=POINTMAZE_ENV_ID,
        entry_point=f"{__name__}:create_pointmaze",
        max_episode_steps=POINTMAZE_MAX_EPISODE_STEPS,
        kwargs=dict(maze_map=POINTMAZE_UMAZE_FIXED, reward_type="sparse", continuing_task=False, reset_target=False),
    )


register_envs()
