"""
The pieces of one EXPO update that need no model object: the TD target, the critic loss, the minibatches,
the metrics and the learning-rate decay. Pure functions and small containers, testable on their own.
"""

import math
from dataclasses import dataclass

import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sb3_expo.checks import check_finite
from sb3_expo.critics import CriticEnsemble


def td_target(
    critic_target: CriticEnsemble,
    next_obs: th.Tensor,
    candidates: th.Tensor,
    rewards: th.Tensor,
    not_terminal: th.Tensor,
    gamma: float,
    selection_subset: th.Tensor,
    value_subset: th.Tensor,
) -> tuple[th.Tensor, th.Tensor]:
    """
    EXPO's TD target (docs/algorithm.md, "One update", step 1): pick the next action a* among the OTF
    candidates by the minimum over one random subset of target critics, then bootstrap from the minimum
    over an *independent* subset at a*. There is no entropy term in the backup.

    Only the critics these minima use are evaluated: the selection subset on every candidate, the value
    subset on a* alone (with 10 critics, subsets of 2 and 16 candidates: 34 critic evaluations per state, not 160).

    :param critic_target: the target critic ensemble; ``critic_target(obs, actions, members)`` is ``(k, ...)``
    :param next_obs: features of s' ``(B, obs_dim)``
    :param candidates: the OTF candidates at s' ``(B, C, action_dim)``
    :param rewards: ``(B,)``
    :param not_terminal: ``1 - terminated`` ``(B,)`` (truncation is not termination)
    :param gamma: discount factor
    :param selection_subset: critic indices that rank candidates
    :param value_subset: critic indices that value a*
    :return: the targets ``(B,)`` and the index of a* among the candidates ``(B,)``
    """
    n_candidates = candidates.shape[1]
    candidate_obs = next_obs.unsqueeze(1).expand(-1, n_candidates, -1)
    best = critic_target(candidate_obs, candidates, selection_subset).min(dim=0).values.argmax(dim=1)
    best_action = candidates.gather(1, best.view(-1, 1, 1).expand(-1, 1, candidates.shape[-1]))
    q_best = critic_target(next_obs.unsqueeze(1), best_action, value_subset).squeeze(-1).min(dim=0).values
    return rewards + gamma * not_terminal * q_best, best


def critic_loss(critic: CriticEnsemble, obs: th.Tensor, actions: th.Tensor, target: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Mean squared TD error of every critic against the same target; also returns the Q-values ``(E, B)``."""
    q_values = critic(obs, actions)
    return ((q_values - target) ** 2).mean(), q_values


def cosine_decay(step: int, decay_steps: int | None) -> float:
    """Factor of the cosine learning-rate decay from 1 to 0 over ``decay_steps`` (1 when ``decay_steps`` is None)."""
    if decay_steps is None:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step, decay_steps) / decay_steps))


@dataclass
class Minibatch:
    """One minibatch of an update, observations already through the features extractor."""

    obs: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    not_terminal: th.Tensor
    next_obs: th.Tensor

    @classmethod
    def from_samples(cls, policy: BasePolicy, data: ReplayBufferSamples) -> "Minibatch":
        features = policy.features_extractor
        return cls(
            policy.extract_features(data.observations, features),
            data.actions,
            data.rewards.flatten(),
            1.0 - data.dones.flatten(),
            policy.extract_features(data.next_observations, features),
        )

    def split(self, batch_size: int) -> list["Minibatch"]:
        """Views of consecutive minibatches of ``batch_size`` rows."""
        parts = [tensor.split(batch_size) for tensor in vars(self).values()]
        return [Minibatch(*tensors) for tensors in zip(*parts, strict=True)]


class TrainMetrics:
    """The metrics of one update block, kept on the device and read back with a single host copy."""

    def __init__(self) -> None:
        self.values: dict[str, list[th.Tensor]] = {}

    def add(self, metrics: dict[str, th.Tensor]) -> None:
        for name, value in metrics.items():
            self.values.setdefault(name, []).append(value.detach())

    def read(self, **scalars: th.Tensor) -> dict[str, float]:
        """The mean of every metric over the block, and ``scalars`` as they are, as Python floats."""
        means = [th.stack(values).mean() for values in self.values.values()]
        values = th.stack([*means, *(value.reshape(()) for value in scalars.values())]).cpu().tolist()
        return dict(zip([*self.values, *scalars], values, strict=True))


def guarded_step(optimizer: th.optim.Optimizer, loss: th.Tensor, name: str, n_updates: int) -> None:
    """
    ``zero_grad``, ``backward`` and ``step``, the step skipped when ``loss`` is NaN or inf, so that the model in
    memory stays the last good one (:func:`check_finite_losses` then stops training at the end of the block).

    Fused Adam / AdamW (EXPO's default) skip their whole update, moments and step count included, when their
    ``found_inf`` tensor is set: the mechanism of AMP's ``GradScaler``, decided on the device without a host
    sync. Other optimisers get a host-side check before the step (:func:`sb3_expo.checks.check_finite`).
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        if not hasattr(optimizer, "found_inf"):  # one tensor per optimiser, updated in place (graph-capture friendly)
            optimizer.found_inf = th.zeros((), device=loss.device)  # type: ignore[attr-defined]
        optimizer.found_inf.copy_(~th.isfinite(loss.detach()))  # type: ignore[attr-defined]
    else:
        check_finite(loss, f"train/{name}", n_updates)
    optimizer.step()


def check_finite_losses(logged: dict[str, float], n_updates: int) -> None:
    """Stop with a clear error when a loss became NaN or inf."""
    for name in ("critic_loss", "base_loss", "actor_loss", "ent_coef_loss"):
        if name in logged and not math.isfinite(logged[name]):
            raise FloatingPointError(
                f"EXPO: train/{name} became {logged[name]} after {n_updates} critic updates. The optimiser steps on "
                "non-finite losses were skipped, so the model in memory is the last good one (save() and "
                "save_replay_buffer() still work). The usual causes are NaN/inf in the offline data, unnormalised inputs of "
                "huge magnitude (try VecNormalize or a smaller learning_rate) or a reward_scale that makes Q-values overflow."
            )
