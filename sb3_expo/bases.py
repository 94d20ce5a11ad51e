"""
What EXPO asks of its base policy: the :class:`ActionSampler` protocol.

EXPO's base policy π_B(a|s) is trained by imitation only and used as a sampler of candidate actions
(docs/algorithm.md): no Q-value is ever back-propagated through it. :class:`~sb3_expo.policies.ExpoPolicy`
touches it through the few members listed here, so any generative model of actions that has them can be the
base: the DDPM (:class:`sb3_expo.diffusion.DiffusionPolicy`), the rectified flow
(:class:`sb3_expo.flow.FlowPolicy`) or a user's own. :func:`check_action_sampler` tells a user what their base
lacks before training starts.
"""

import copy
from typing import Protocol, runtime_checkable

import torch as th
from torch import nn


@runtime_checkable
class ActionSampler(Protocol):
    """
    The members of a base policy that EXPO uses. Besides them, a base must be:

    - an ``nn.Module``: the policy builds the base's optimiser from ``parameters()`` and attaches it as
      ``base.optimizer``; the EMA is a Polyak average of ``parameters()``; ``train()``/``eval()`` switch its
      dropout; ``state_dict()`` goes into checkpoints; ``to(device)`` moves it with the policy;
    - deep-copyable: ``copy.deepcopy(base)`` makes the EMA base, the copy that acts. Anything the copy holds
      that refers back to the module (a bound method, a cached graph) must then refer to the copy.

    The DDPM takes ``noise_draws() == n_steps`` draws (x_T, then the ``z`` of each step but the last); the flow
    takes one (its starting point x_0).

    :ivar action_dim: size of an action: the policy shapes the sampler's noise ``(noise_draws(), rows, action_dim)``
    :ivar n_steps: network evaluations per sample (denoising or integration steps): what the policy reports and
        sizes its speed choices by
    :ivar mixed_precision: set by the policy: sample with the network in bfloat16 autocast (the base's own
        arithmetic between network calls may stay float32); ``False`` must give float32 samples
    """

    action_dim: int
    n_steps: int
    mixed_precision: bool

    def loss(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """
        The imitation loss on a batch, a scalar to minimise: EXPO's base step back-propagates it and steps
        ``base.optimizer``. It draws its own randomness.

        :param obs: observation features ``(B, obs_dim)``
        :param actions: buffer or dataset actions in [-1, 1] ``(B, action_dim)``
        """
        ...

    def sample(self, obs: th.Tensor, noise: th.Tensor | None = None) -> th.Tensor:
        """
        One action per row of ``obs``, as a deterministic function of ``noise``. The policy draws the noise
        itself: fixed draws give deterministic actions, and it slices the rows of ``obs`` and ``noise[:, rows]``
        into chunks, so row ``i`` of the result must depend on row ``i`` of ``obs`` and ``noise[:, i]`` only.

        :param obs: observation features ``(B, obs_dim)``
        :param noise: standard Gaussian draws ``(noise_draws(), B, action_dim)``; drawn here when ``None``
        :return: actions ``(B, action_dim)`` in [-1, 1]
        """
        ...

    def noise_draws(self) -> int:
        """How many ``(B, action_dim)`` Gaussian draws :meth:`sample` takes: the first axis of its noise."""
        ...


MEMBERS = ("action_dim", "n_steps", "mixed_precision", "loss", "sample", "noise_draws")
"""The members of :class:`ActionSampler`, for :func:`check_action_sampler`'s message."""


def check_action_sampler(base: object) -> None:
    """
    Raise a ``TypeError`` naming what ``base`` lacks to be EXPO's base: the :class:`ActionSampler` members, an
    ``nn.Module``, a deep copy.

    :param base: a candidate base policy
    """
    missing = [name for name in MEMBERS if not hasattr(base, name)]
    if missing:
        raise TypeError(f"{type(base).__name__} is no ActionSampler: it lacks {missing} (sb3_expo.bases.ActionSampler)")
    if not isinstance(base, nn.Module):
        raise TypeError(f"{type(base).__name__} must be a torch.nn.Module (EXPO trains and averages its parameters)")
    try:
        copy.deepcopy(base)
    except Exception as error:
        raise TypeError(f"{type(base).__name__} cannot be deep-copied (EXPO's EMA base is a copy): {error}") from error
