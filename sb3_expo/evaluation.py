"""The paper's evaluation metric (the share of episodes that reach the goal), imitation alone as an actor, and a
fine-tuning monitor that tells when the policy starts to forget what pretraining taught it."""

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from sb3_expo.open_loop import OpenLoop


def evaluate_success_rate(model: Any, env: gym.Env, n_episodes: int = 20, deterministic: bool = True) -> float:
    """
    Run ``n_episodes`` full episodes and return the share whose last step reported
    ``info["is_success"]`` (the flag SB3 logs as ``rollout/success_rate`` and ``EvalCallback`` as
    ``eval/success_rate``). Unlike ``evaluate_policy``'s mean return, this is the figure the paper
    plots for AntMaze, Adroit and robomimic.

    :param model: anything with SB3's ``predict(observation, state, episode_start, deterministic)``: the state travels
        between the calls of an episode (a chunked policy's pending actions, a recurrent one's memory)
    :param env: a single (not vectorised) environment with a time limit that sets ``info["is_success"]``
    :param n_episodes: episodes to run; seed ``env`` beforehand (``env.reset(seed=...)``) for a repeatable figure
    :param deterministic: passed to ``predict``
    :return: the success rate in [0, 1]
    :raises KeyError: the environment never sets ``info["is_success"]``
    """
    successes = []
    for _ in range(n_episodes):
        observation, _ = env.reset()
        state, episode_start, done = None, np.ones(1, dtype=bool), False
        while not done:
            action, state = model.predict(observation, state, episode_start, deterministic)
            observation, _, terminated, truncated, info = env.step(action)
            episode_start, done = np.zeros(1, dtype=bool), terminated or truncated
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
        self.open_loop = OpenLoop(model.policy.action_chunk, model.policy.observation_space, model.policy.action_space.shape)

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> tuple[np.ndarray, Any]:
        """
        One base-policy sample per observation, in the env's action units (SB3's ``predict`` signature). With
        ``action_chunk`` h > 1 the sample is a chunk, executed over h calls as the model's policy does
        (:meth:`sb3_expo.policies.ExpoPolicy.predict`).
        """
        if self.policy.action_chunk == 1:
            return self._sample(observation), state
        return self.open_loop.predict(self._sample, observation, state, episode_start)

    def _sample(self, observation: Any) -> np.ndarray:
        policy = self.policy
        policy.set_training_mode(False)
        obs_tensor, vectorized = policy.obs_to_tensor(observation)
        with th.no_grad():
            features = policy.extract_features(obs_tensor, policy.features_extractor)
            actions = policy.base_ema.sample(features).cpu().numpy()
        actions = policy.unscale_action(actions.reshape((-1, *policy.action_space.shape)))
        return actions if vectorized else actions[0]


class ForgettingMonitor(BaseCallback):
    """
    Tells when fine-tuning starts to forget: every ``eval_freq`` env steps, the success rate of the model's
    on-the-fly action and of its base policy alone (:class:`BasePolicyActor`), against the success measured when
    ``learn()`` started (after pretraining). TensorBoard keys: ``finetune/success_rate``,
    ``finetune/base_success_rate``, ``finetune/pretrained_success_rate`` and, from the training batches,
    ``train/imitation_online_share`` (the share of the base's imitation rows drawn from online episodes).
    When the on-the-fly success falls more than ``tolerance`` below the pretrained one, it warns once, naming
    the usual remedies (docs/algorithm.md, "Fine-tuning recipe").

    :param eval_env: a single env that reports ``info["is_success"]`` (seed it for repeatable figures)
    :param eval_freq: env steps between two evaluations
    :param n_eval_episodes: episodes per evaluation and actor
    :param deterministic: passed to the model's ``predict`` (the paper evaluates the stochastic action)
    :param tolerance: drop below the pretrained success that counts as forgetting
    :param verbose: 1 prints every evaluation
    """

    def __init__(
        self,
        eval_env: gym.Env,
        eval_freq: int = 5000,
        n_eval_episodes: int = 20,
        deterministic: bool = False,
        tolerance: float = 0.1,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        self.eval_env, self.eval_freq, self.n_eval_episodes = eval_env, eval_freq, n_eval_episodes
        self.deterministic, self.tolerance = deterministic, tolerance
        self.pretrained_success_rate: float | None = None
        self.history: list[tuple[int, float, float]] = []  # (env steps, on-the-fly success, base-alone success)
        self._warned = False

    def _evaluate(self) -> tuple[float, float]:
        otf = evaluate_success_rate(self.model, self.eval_env, self.n_eval_episodes, self.deterministic)
        base = evaluate_success_rate(BasePolicyActor(self.model), self.eval_env, self.n_eval_episodes)
        return otf, base

    def _on_training_start(self) -> None:
        if self.pretrained_success_rate is None:
            self.pretrained_success_rate, base = self._evaluate()
            self._record(self.pretrained_success_rate, base)

    def _on_step(self) -> bool:
        if self.n_calls % self.eval_freq == 0:
            otf, base = self._evaluate()
            self._record(otf, base)
            assert self.pretrained_success_rate is not None
            if otf < self.pretrained_success_rate - self.tolerance and not self._warned:
                self._warned = True
                warnings.warn(
                    f"EXPO is forgetting: success {otf:.2f} after {self.num_timesteps} env steps, "
                    f"{self.pretrained_success_rate:.2f} after pretraining (base alone now {base:.2f}). Usual remedies: "
                    "pretrain the critics too (pretrain(n) does by default), base_imitates='offline_and_successes', a "
                    "smaller edit_scale (docs/algorithm.md, 'Fine-tuning recipe').",
                    stacklevel=2,
                )
        return True

    def _record(self, otf: float, base: float) -> None:
        self.history.append((self.num_timesteps, otf, base))
        self.logger.record("finetune/success_rate", otf)
        self.logger.record("finetune/base_success_rate", base)
        self.logger.record("finetune/pretrained_success_rate", self.pretrained_success_rate)
        self.logger.dump(step=self.num_timesteps)
        if self.verbose:
            print(f"{self.num_timesteps} env steps: success {otf:.2f}, base alone {base:.2f}")
