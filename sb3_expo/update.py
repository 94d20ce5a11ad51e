"""
The pieces of one EXPO update that need no model object: the TD target, the critic loss, the minibatches,
the metrics and the learning-rate decay. Pure functions and small containers, testable on their own.
"""

import math
from dataclasses import dataclass

import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import update_learning_rate

from sb3_expo.checks import check_finite
from sb3_expo.critics import CriticEnsemble


def td_target(
    critic_target: CriticEnsemble,
    next_obs: th.Tensor,
    candidates: th.Tensor,
    rewards: th.Tensor,
    not_terminal: th.Tensor,
    gamma: float | th.Tensor,
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
    :param gamma: discount factor, or per row ``(B,)`` (γ^j for an action chunk of j steps: the SMDP backup)
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
    """
    One minibatch of an update, observations already through the features extractor. ``discounts`` weighs the
    bootstrap of each row: γ for a one-step transition, γ^j for an action chunk that lasted j steps
    (:mod:`sb3_expo.chunks`).
    """

    obs: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    not_terminal: th.Tensor
    next_obs: th.Tensor
    discounts: th.Tensor

    @classmethod
    def from_samples(cls, policy: BasePolicy, data: ReplayBufferSamples, gamma: float) -> "Minibatch":
        """
        The minibatch of a replay sample: one-step transitions (discount ``gamma``), or action chunks with their own
        ``discounts``. SB3's n-step samples are refused, not taken for chunks: their actions are single steps.
        """
        discounts = getattr(data, "discounts", None)
        if discounts is not None and getattr(policy, "action_chunk", 1) == 1:
            raise ValueError(
                "EXPO's TD target is one-step (r + γ·Q) unless it acts in chunks (action_chunk): n-step replay buffers "
                "(SB3's NStepReplayBuffer, samples with discounts) are not supported. Leave replay_buffer_class unset."
            )
        discounts = th.full_like(data.rewards.flatten(), gamma) if discounts is None else discounts.flatten()
        features = policy.features_extractor
        return cls(
            policy.extract_features(data.observations, features),
            data.actions,
            data.rewards.flatten(),
            1.0 - data.dones.flatten(),
            policy.extract_features(data.next_observations, features),
            discounts,
        )

    def rows(self, start: int, end: int) -> "Minibatch":
        """A view of rows ``start:end``."""
        return Minibatch(*(tensor[start:end] for tensor in vars(self).values()))

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
        every_value = [value.reshape(()) for values in self.values.values() for value in values]
        numbers = iter(th.stack([*every_value, *(value.reshape(()) for value in scalars.values())]).cpu().tolist())
        means = {name: sum(next(numbers) for _ in values) / len(values) for name, values in self.values.items()}
        return {**means, **{name: next(numbers) for name in scalars}}


def guarded_step(optimizer: th.optim.Optimizer, loss: th.Tensor, name: str, n_updates: int) -> None:
    """
    One optimiser step on ``loss``, skipped when ``loss`` is NaN or inf, so that the model in memory stays the last
    good one (:func:`check_finite_losses` then stops training at the end of the block).

    The gradients are those of the optimiser's own parameters only (``torch.autograd.grad``): the edit actor's loss
    runs through the critics without touching their gradients. Then the optimiser's ``step``: fused Adam / AdamW
    (EXPO's default) skip their whole update, moments and step count included, when their ``found_inf`` tensor is
    set (AMP's ``GradScaler`` mechanism, decided on the device without a host sync); other optimisers get a host-side
    check first (:func:`sb3_expo.checks.check_finite`). An optimiser of a compiled update carries the same step as
    traceable tensor code (``optimizer.graph_adam``, :class:`sb3_expo.acceleration.GraphAdam`), which takes the
    gradients and the finiteness flag as tensors.
    """
    graph_adam = getattr(optimizer, "graph_adam", None)
    if graph_adam is not None:  # its parameter list, read once: a graph would guard on every param_groups entry
        graph_adam.step(th.autograd.grad(loss, graph_adam.params), th.isfinite(loss.detach()))
        return
    params = [param for group in optimizer.param_groups for param in group["params"]]
    for param, grad in zip(params, th.autograd.grad(loss, params), strict=True):
        param.grad = grad
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        if not hasattr(optimizer, "found_inf"):  # one tensor per optimiser, updated in place
            optimizer.found_inf = th.zeros((), device=loss.device)  # type: ignore[attr-defined]
        optimizer.found_inf.copy_(~th.isfinite(loss.detach()))  # type: ignore[attr-defined]
    else:
        check_finite(loss, f"train/{name}", n_updates)
    optimizer.step()


def set_learning_rate(optimizer: th.optim.Optimizer, learning_rate: float) -> None:
    """SB3's ``update_learning_rate``, and the tensor copy that a compiled update reads (``optimizer.graph_adam``)."""
    update_learning_rate(optimizer, learning_rate)
    if hasattr(optimizer, "graph_adam"):
        optimizer.graph_adam.lr.fill_(learning_rate)
