"""
The Gymnasium wrappers shared by the tasks of :mod:`sb3_expo.tasks`: a success flag SB3 can read, an
episode ended at success, and FetchPush's boolean success with no episode starting solved.

They live here, and stay here, because a wrapper's import path is part of the environment spec that
every locally built Minari dataset stores (``sb3_expo.envs:IsSuccessInfo``, ...):
``dataset.recover_environment()`` rebuilds the env only while the wrapper is found under that path.

The tasks themselves moved to :mod:`sb3_expo.tasks` (one module per family); their documented names
(``make_pointmaze_env``, ``POINTMAZE_ENV_ID``, the entry points ``create_pointmaze`` and
``create_fetchpush`` stored in datasets built before the move, ...) are still found here, loaded from
there on first use: a lazy lookup rather than an import, so that the tasks can import these wrappers.
MuJoCo and Gymnasium-Robotics are imported only when an environment is created: install them with
``pip install "sb3_expo[robotics]"``.
"""

import importlib
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_expo.optional import import_optional


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


# Names that moved to the task families, still importable from here: name -> module.
MOVED = {
    **dict.fromkeys(
        ("POINTMAZE_ENV_ID", "POINTMAZE_LARGE_ENV_ID", "create_pointmaze", "make_pointmaze_env", "make_pointmaze_large_env"),
        "sb3_expo.tasks.pointmaze",
    ),
    **dict.fromkeys(("FETCHPUSH_ENV_ID", "create_fetchpush", "make_fetchpush_env"), "sb3_expo.tasks.fetchpush"),
    "register_envs": "sb3_expo.tasks",
}


def __getattr__(name: str) -> Any:
    """The names of :data:`MOVED`, from their task module (importing it registers every task id)."""
    if name in MOVED:
        return getattr(importlib.import_module(MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
