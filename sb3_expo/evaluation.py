"""The paper's evaluation metric: the share of episodes that reach the goal."""

from typing import Any

import gymnasium as gym
import numpy as np


def evaluate_success_rate(model: Any, env: gym.Env, n_episodes: int = 20, deterministic: bool = True) -> float:
    """
    Run ``n_episodes`` full episodes and return the share whose last step reported
    ``info["is_success"]`` (the flag SB3 logs as ``rollout/success_rate`` and ``EvalCallback`` as
    ``eval/success_rate``). Unlike ``evaluate_policy``'s mean return, this is the figure the paper
    plots for AntMaze, Adroit and robomimic.

    :param model: anything with SB3's ``predict(observation, deterministic=...)``
    :param env: a single (not vectorised) environment with a time limit that sets ``info["is_success"]``
    :param n_episodes: episodes to run; seed ``env`` beforehand (``env.reset(seed=...)``) for a repeatable figure
    :param deterministic: passed to ``predict``
    :return: the success rate in [0, 1]
    :raises KeyError: the environment never sets ``info["is_success"]``
    """
    successes = []
    for _ in range(n_episodes):
        observation, _ = env.reset()
        done = False
        while not done:
            action, _ = model.predict(observation, deterministic=deterministic)
            observation, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        if "is_success" not in info:
            raise KeyError(
                "evaluate_success_rate needs info['is_success'] at the end of an episode: wrap the env "
                "(e.g. sb3_expo.envs.IsSuccessInfo) so that it reports success"
            )
        successes.append(bool(info["is_success"]))
    return float(np.mean(successes))
