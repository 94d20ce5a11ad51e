"""The paper's evaluation metric (the share of episodes that reach the goal), and imitation alone as an actor."""

from typing import Any

import gymnasium as gym
import numpy as np
import torch as th


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


class BasePolicyActor:
    """
    Acts with EXPO's (EMA) diffusion base policy alone: one sample per state, no edit and no critic
    ranking. Its success after :meth:`~sb3_expo.EXPO.pretrain` is what imitation of the offline data
    achieves by itself, the floor that EXPO's on-the-fly action and online learning should beat.

    A diffusion policy has no mode, so ``deterministic`` changes nothing here.

    :param model: a trained :class:`~sb3_expo.EXPO`
    """

    def __init__(self, model: Any):
        self.policy = model.policy

    def predict(self, observation: Any, deterministic: bool = False) -> tuple[np.ndarray, None]:
        """One base-policy sample per observation, in the env's action units (SB3's ``predict`` signature)."""
        policy = self.policy
        policy.set_training_mode(False)
        obs_tensor, vectorized = policy.obs_to_tensor(observation)
        with th.no_grad():
            features = policy.extract_features(obs_tensor, policy.features_extractor)
            actions = policy.base_ema.sample(features).cpu().numpy()
        actions = policy.unscale_action(actions.reshape((-1, *policy.action_space.shape)))
        return (actions if vectorized else actions[0]), None
