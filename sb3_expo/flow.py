"""
A flow-matching base policy: a rectified flow over actions, conditioned on the observation.

An alternative to the DDPM of :mod:`sb3_expo.diffusion` with the same interface (:class:`sb3_expo.bases.ActionSampler`),
and like it trained by imitation only and used as a sampler of candidate actions. Where the DDPM learns to remove
noise over T stochastic steps, the flow learns a velocity field that carries a Gaussian draw x_0 straight to an action
along the line ``x_t = (1 - t)·x_0 + t·a``, and samples by integrating it from t = 0 to 1: one Gaussian draw per
action, every step deterministic.

The module reads top to bottom:

- the plain flow: :func:`flow_path` (the interpolation and its velocity), :func:`flow_velocity` (the network
  v_θ(s, x_t, t), and how it sees t), :func:`flow_loss` (the training loss) and :func:`flow_sample` (Euler
  integration, written as the formula: the reference the fast sampler is tested against);
- :class:`FlowPolicy`: the network (the DDPM's :class:`~sb3_expo.diffusion.Denoiser`, here predicting a velocity)
  with :meth:`~FlowPolicy.loss` and :meth:`~FlowPolicy.sample`;
- last, the fast sampler :func:`fast_flow_sample`: :func:`flow_sample`'s numbers with the DDPM fast sampler's
  tricks (the input layer's fixed terms computed once, oneDNN layers, bf16 autocast).
"""

import torch as th
from torch import nn

from sb3_expo.backend import in_row_chunks
from sb3_expo.diffusion import Denoiser, denoise_step, fixed_input_terms

# ------------------------------------------------------------------------------------------------ the plain flow

TIME_SCALE = 10.0
"""
What the network's time embedding sees is ``TIME_SCALE · t`` for flow time t ∈ [0, 1]. The embedding
(:class:`~sb3_expo.diffusion.FourierFeatures`) was designed for the DDPM's integer steps 0..9 (T = 10): its
frequencies start at a standard deviation of 0.2, so t ∈ [0, 1] fed as is would turn most features by about a
radian or less over the whole flow, and they would barely tell times apart. Scaled by 10, flow times span the
DDPM's range. The scale is fixed rather than ``n_steps``, so the learned field does not depend on the Euler grid:
a model can sample with another ``n_steps`` than it was trained with.
"""


def flow_path(x0: th.Tensor, actions: th.Tensor, t: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """
    The rectified-flow path from noise to action and its velocity: ``x_t = (1 - t)·x_0 + t·a`` and
    ``dx_t/dt = a - x_0``, the regression target of :func:`flow_loss`.

    :param x0: the Gaussian starting points ``(B, action_dim)``
    :param actions: the actions a, the end points ``(B, action_dim)``
    :param t: flow times in [0, 1] ``(B,)``
    :return: x_t and the target velocity ``a - x_0``, both ``(B, action_dim)``
    """
    t = t.unsqueeze(-1)
    return (1 - t) * x0 + t * actions, actions - x0


def flow_velocity(denoiser: Denoiser, obs: th.Tensor, x: th.Tensor, t: th.Tensor) -> th.Tensor:
    """
    v_θ(s, x_t, t): the network at flow time t. ``t`` is float, so it goes through the time embedding here
    (``Denoiser.forward`` reads integer tensors as step indices, anything else as an embedding), scaled by
    :data:`TIME_SCALE`.

    :param denoiser: the network
    :param obs: observation features ``(B, obs_dim)``
    :param x: points on the path x_t ``(B, action_dim)``
    :param t: flow times in [0, 1], ``(B,)`` or ``(1,)`` for one time for all rows
    """
    return denoiser(obs, x, denoiser.embed_time(TIME_SCALE * t))


def flow_loss(denoiser: Denoiser, obs: th.Tensor, actions: th.Tensor, t: th.Tensor, x0: th.Tensor) -> th.Tensor:
    """
    The flow-matching loss at given draws: ``mean_batch ||v_θ(s, x_t, t) - (a - x_0)||²`` with
    ``x_t = (1 - t)·x_0 + t·a``, the squared error summed over action dimensions (as the DDPM loss).

    :param denoiser: the network
    :param obs: observation features ``(B, obs_dim)``
    :param actions: actions in [-1, 1] ``(B, action_dim)``
    :param t: flow times, uniform in [0, 1) ``(B,)``
    :param x0: standard Gaussian draws ``(B, action_dim)``
    """
    x_t, target = flow_path(x0, actions, t)
    return ((flow_velocity(denoiser, obs, x_t, t) - target) ** 2).sum(dim=-1).mean()


def flow_sample(denoiser: Denoiser, obs: th.Tensor, noise: th.Tensor, n_steps: int) -> th.Tensor:
    """
    Euler integration of the flow, as plain as it gets: ``x ← x_0``, then for k = 0..n-1 with h = 1/n,
    ``x ← x + h · v_θ(s, x, k·h)``; the result clipped to [-1, 1]. Only the end is clipped: the points on the
    way mix noise and action and have no reason to lie in the action box (clipping them, as the DDPM does its
    x_k, would change the field's input). :func:`fast_flow_sample` is tested against this loop.

    :param denoiser: the network
    :param obs: observation features ``(B, obs_dim)``
    :param noise: the sampler's one Gaussian draw ``(1, B, action_dim)``: ``noise[0]`` is x_0
    :param n_steps: Euler steps n
    :return: actions ``(B, action_dim)`` in [-1, 1]
    """
    x = noise[0]
    for k in range(n_steps):
        t = th.full((1,), k / n_steps, device=obs.device)
        x = x + flow_velocity(denoiser, obs, x, t) / n_steps
    return x.clamp(-1.0, 1.0)


# -------------------------------------------------------------------------------------------------- the policy


class FlowPolicy(nn.Module):
    """
    Rectified flow over actions in [-1, 1], conditioned on observation features: a drop-in for
    :class:`~sb3_expo.diffusion.DiffusionPolicy` (the :class:`~sb3_expo.bases.ActionSampler` protocol).

    :param obs_dim: size of the observation features
    :param action_dim: size of the action
    :param n_steps: Euler steps of the sampler (network evaluations per sample, as the DDPM's T)
    :param width: hidden width of the network
    :param n_blocks: number of residual blocks of the network
    :param dropout: dropout rate of the network
    """

    def __init__(
        self, obs_dim: int, action_dim: int, n_steps: int = 10, width: int = 256, n_blocks: int = 3, dropout: float = 0.0
    ):
        super().__init__()
        self.action_dim = action_dim
        self.n_steps = n_steps
        # The DDPM's network, predicting a velocity instead of a noise. Named as the DDPM's, so code that reaches
        # into the base's network (its layers, its width) works with either base.
        self.denoiser = Denoiser(obs_dim, action_dim, width, n_blocks, dropout)
        # Set by ExpoPolicy: bf16 autocast of the network while sampling.
        self.mixed_precision = False

    default_steps = 2  # measured: docs/algorithm.md, "Beyond the paper" (imitation per step count, speed)

    def noise_draws(self) -> int:
        """One: the starting point x_0; the integration itself draws nothing (the DDPM takes T draws)."""
        return 1

    def loss(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """
        The flow-matching loss (:func:`flow_loss`) at fresh draws: t uniform in [0, 1), then x_0 ~ N(0, I).
        Continuous t rather than the Euler grid's k/n: the field is learned at every time, so any ``n_steps``
        can sample from it.

        :param obs: observation features ``(B, obs_dim)``
        :param actions: actions in [-1, 1] ``(B, action_dim)``
        """
        t = th.rand(actions.shape[0], device=actions.device)
        return flow_loss(self.denoiser, obs, actions, t, th.randn_like(actions))

    def sample(self, obs: th.Tensor, noise: th.Tensor | None = None) -> th.Tensor:
        """
        Draw one action per row of ``obs`` by Euler integration (:func:`flow_sample`'s numbers, computed by the
        fast sampler: :meth:`denoise`). Repeat rows of ``obs`` to draw several actions per state.

        :param obs: observation features ``(B, obs_dim)``
        :param noise: the starting points ``(1, B, action_dim)``; drawn here by default
        :return: actions ``(B, action_dim)`` in [-1, 1]
        """
        if noise is None:
            noise = th.randn(self.noise_draws(), obs.shape[0], self.action_dim, device=obs.device)
        return self.denoise(obs, noise)

    def denoise(self, obs: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """
        The sampler as a deterministic function of its noise (``noise[0]`` is x_0), named as the DDPM's: a
        function that can be compiled (:mod:`sb3_expo.acceleration`). Runs :meth:`denoise_eager`, on a CPU in row
        chunks (:func:`sb3_expo.backend.in_row_chunks`).

        :param obs: observation features ``(B, obs_dim)``
        :param noise: ``(1, B, action_dim)`` standard Gaussian draws
        :return: actions ``(B, action_dim)`` in [-1, 1]
        """
        return in_row_chunks(self.denoise_eager, obs, noise)

    def denoise_eager(self, obs: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """:func:`fast_flow_sample` with this policy's network, eager, in one pass."""
        return fast_flow_sample(self.denoiser, obs, noise, self.n_steps, self.mixed_precision)

    def denoise_plain(self, obs: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """:func:`flow_sample` with this policy's network: the reference for :meth:`denoise`."""
        return flow_sample(self.denoiser, obs, noise, self.n_steps)


# ---------------------------------------------------------------------------------------------- the fast sampler


def fast_flow_sample(
    denoiser: Denoiser, obs: th.Tensor, noise: th.Tensor, n_steps: int, mixed_precision: bool = False
) -> th.Tensor:
    """
    :func:`flow_sample`'s numbers, faster: the input layer's observation term and the n time terms once per call
    (:func:`~sb3_expo.diffusion.fixed_input_terms`), each step through
    :func:`~sb3_expo.diffusion.denoise_step`, as the DDPM's fast sampler.

    :param denoiser: the network
    :param obs: observation features ``(B, obs_dim)``
    :param noise: ``(1, B, action_dim)`` standard Gaussian draws, as in :func:`flow_sample`
    :param n_steps: Euler steps n
    :param mixed_precision: run the network in bfloat16 autocast (the update of x stays float32)
    :return: actions ``(B, action_dim)`` in [-1, 1]
    """
    times = th.arange(n_steps, device=obs.device) / n_steps
    obs_term, time_terms = fixed_input_terms(denoiser, obs, TIME_SCALE * times)
    x = noise[0]
    for k in range(n_steps):
        with th.autocast(obs.device.type, dtype=th.bfloat16, enabled=mixed_precision):
            velocity = denoise_step(denoiser, x, obs_term, time_terms[k])
        # x <- x + v / n; out of place, so the caller's noise is left as it was.
        x = x.add(velocity.float(), alpha=1.0 / n_steps)
    return x.clamp(-1.0, 1.0)
