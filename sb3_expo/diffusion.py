"""The base policy: a DDPM over actions, conditioned on the observation (docs/algorithm.md, "Networks").

EXPO never back-propagates a Q-value through this model. It is trained by imitation only (the DDPM
ε-prediction loss on buffer or dataset actions) and is used as a sampler of candidate actions.

The module reads top to bottom as the paper describes the model:

- the plain DDPM: :func:`vp_beta_schedule` (the variance-preserving noise schedule), :func:`ddpm_loss`
  (the training loss) and :func:`ddpm_sample` (the sampler loop, written as docs/algorithm.md states it: the
  reference every faster sampler is tested against);
- the denoiser ε_θ(s, x_t, k): :class:`FourierFeatures` of the time index and the MLP-ResNet
  :class:`Denoiser`, in plain PyTorch layers;
- :class:`DiffusionPolicy`: schedule + denoiser, with :meth:`~DiffusionPolicy.loss` and
  :meth:`~DiffusionPolicy.sample`;
- last, the fast sampler :func:`fast_ddpm_sample`: the same numbers as :func:`ddpm_sample` (up to
  floating-point summation order) with fewer operations per step. How it runs (oneDNN layers, CPU row
  chunks, ``torch.compile``) lives in :mod:`sb3_expo.backend`.
"""

import math

import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_expo.backend import Linear, in_row_chunks, linear

# ------------------------------------------------------------------------- the plain DDPM (docs/algorithm.md, "Networks")


def vp_beta_schedule(n_steps: int) -> th.Tensor:
    """
    Variance-preserving β schedule of the reference code (a discretised VP-SDE with
    β_min = 0.1 and β_max = 10):

    β_t = 1 - exp(-β_min / T - (β_max - β_min) · (2t - 1) / (2 T²)),   t = 1..T

    :param n_steps: number of diffusion steps T
    :return: β_1..β_T as a float32 tensor of shape ``(T,)``
    """
    t = th.arange(1, n_steps + 1, dtype=th.float64)
    beta_min, beta_max = 0.1, 10.0
    alpha = th.exp(-beta_min / n_steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / n_steps**2)
    return (1.0 - alpha).float()


def ddpm_loss(denoiser: nn.Module, alpha_bars: th.Tensor, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """
    DDPM loss: noise the actions to a uniformly drawn step k and regress the noise,
    ``E ||ε - ε_θ(s, √ᾱ_k a + √(1-ᾱ_k) ε, k)||²`` (summed over action dimensions, averaged over the batch).

    :param denoiser: ε_θ(obs, noisy_action, k)
    :param alpha_bars: ᾱ_0..ᾱ_{T-1} ``(T,)``
    :param obs: observation features ``(B, obs_dim)``
    :param actions: actions in [-1, 1] ``(B, action_dim)``
    """
    t = th.randint(0, alpha_bars.shape[0], (actions.shape[0],), device=actions.device)
    noise = th.randn_like(actions)
    alpha_bar = alpha_bars[t].unsqueeze(-1)
    noisy_actions = alpha_bar.sqrt() * actions + (1 - alpha_bar).sqrt() * noise
    return ((denoiser(obs, noisy_actions, t) - noise) ** 2).sum(dim=-1).mean()


def ddpm_sample(denoiser: nn.Module, betas: th.Tensor, obs: th.Tensor, noise: th.Tensor) -> th.Tensor:
    """
    The reference's DDPM sampler, as plain as it gets: x ~ N(0, I), then for k = T-1..0,
    ``x ← (x - (1-α_k)/√(1-ᾱ_k) · ε_θ(s, x, k)) / √α_k``, plus ``√β_k · z`` when k > 0, clipped to [-1, 1]
    after every step. The fast sampler (:func:`fast_ddpm_sample`) is tested against this loop.

    :param denoiser: ε_θ(obs, noisy_action, k)
    :param betas: β_0..β_{T-1} ``(T,)``
    :param obs: observation features ``(B, obs_dim)``
    :param noise: all the sampler's Gaussian draws ``(T, B, action_dim)``: ``noise[0]`` is x_T,
        ``noise[T - k]`` the ``z`` added at step k
    :return: actions ``(B, action_dim)`` in [-1, 1]
    """
    n_steps = betas.shape[0]
    alphas = 1 - betas
    alpha_bars = th.cumprod(alphas, dim=0)
    x = noise[0]
    for k in reversed(range(n_steps)):
        eps = denoiser(obs, x, th.full((obs.shape[0],), k, device=obs.device))
        x = (x - (1 - alphas[k]) / (1 - alpha_bars[k]).sqrt() * eps) / alphas[k].sqrt()
        if k > 0:
            x = x + betas[k].sqrt() * noise[n_steps - k]
        x = x.clamp(-1.0, 1.0)
    return x


# ------------------------------------------------------------------------------------------ the denoiser


def xavier_uniform_(layer: nn.Linear) -> nn.Linear:
    """Xavier-uniform weights and zero bias: flax's ``Dense`` init in the reference, for heads and input/output layers."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def lecun_normal_(layer: nn.Linear) -> nn.Linear:
    """
    LeCun-normal weights (variance 1/fan_in, truncated at two standard deviations, as flax's ``lecun_normal``)
    and zero bias: the reference's init inside the denoiser's residual blocks.
    """
    # Truncating a unit normal at ±2 shrinks its std to 0.8796; flax rescales so the variance stays 1/fan_in.
    std = math.sqrt(1.0 / layer.in_features) / 0.87962566103423978
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(layer.bias)
    return layer


class FourierFeatures(nn.Module):
    """
    Learnable Fourier features of a scalar time index: ``[cos(2π k W), sin(2π k W)]``.

    :param n_frequencies: number of frequencies (the output has twice as many features)
    :param init_std: standard deviation of the initial frequencies
    """

    def __init__(self, n_frequencies: int = 64, init_std: float = 0.2):
        super().__init__()
        self.frequencies = nn.Parameter(th.randn(n_frequencies) * init_std)

    def forward(self, t: th.Tensor) -> th.Tensor:
        angles = 2 * math.pi * t.float().unsqueeze(-1) * self.frequencies
        return th.cat([angles.cos(), angles.sin()], dim=-1)


class ResidualBlock(nn.Module):
    """``h + Linear(SiLU(Linear_4x(LayerNorm(Dropout(h)))))``: the pre-norm block of the IDQL/EXPO denoiser."""

    def __init__(self, width: int, dropout: float = 0.0, expansion: int = 4):
        super().__init__()
        # [dropout, norm, expand, contract]: a list (the SiLU sits between the two layers, see forward).
        self.net = nn.ModuleList(
            [
                nn.Dropout(dropout),
                nn.LayerNorm(width, eps=1e-6),
                lecun_normal_(Linear(width, expansion * width)),
                lecun_normal_(Linear(expansion * width, width)),
            ]
        )

    def forward(self, h: th.Tensor) -> th.Tensor:
        dropout, norm, expand, contract = self.net
        return h + contract(F.silu(expand(norm(dropout(h)))))


class Denoiser(nn.Module):
    """
    ε_θ(s, x_t, k): predicts the noise that was added to an action.

    The time index k ∈ {0..T-1} goes through learnable Fourier features and a two-layer MLP; the
    result is concatenated with the noisy action and the observation features and fed to an
    MLP-ResNet. The output is not squashed (it is a noise estimate, not an action).

    :param obs_dim: size of the observation features
    :param action_dim: size of the action
    :param width: hidden width of the ResNet and of the time MLP
    :param n_blocks: number of residual blocks
    :param dropout: dropout rate inside the residual blocks
    :param n_frequencies: number of Fourier frequencies of the time embedding
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        width: int = 256,
        n_blocks: int = 3,
        dropout: float = 0.0,
        n_frequencies: int = 64,
    ):
        super().__init__()
        self.action_dim = action_dim
        self.time_embedding = nn.Sequential(
            FourierFeatures(n_frequencies),
            xavier_uniform_(Linear(2 * n_frequencies, width)),
            nn.SiLU(),
            xavier_uniform_(Linear(width, width)),
        )
        self.input_layer = xavier_uniform_(Linear(action_dim + obs_dim + width, width))
        self.blocks = nn.Sequential(*[ResidualBlock(width, dropout) for _ in range(n_blocks)])
        self.output_layer = nn.Sequential(nn.SiLU(), xavier_uniform_(Linear(width, action_dim)))

    def forward(self, obs: th.Tensor, noisy_action: th.Tensor, t: th.Tensor) -> th.Tensor:
        """
        :param obs: observation features ``(B, obs_dim)``
        :param noisy_action: x_t ``(B, action_dim)``
        :param t: integer time indices ``(B,)``, or a time embedding already computed by
            :meth:`embed_time` and broadcastable to ``(B, width)``
        """
        t_emb = self.embed_time(t) if t.dtype in (th.int32, th.int64) else t
        t_emb = t_emb.expand(noisy_action.shape[0], -1)
        h = self.input_layer(th.cat([noisy_action, obs, t_emb], dim=-1))
        return self.output_layer(self.blocks(h))

    def embed_time(self, t: th.Tensor) -> th.Tensor:
        return self.time_embedding(t)


# ------------------------------------------------------------------------------------------- the policy


class DiffusionPolicy(nn.Module):
    """
    DDPM with ε-prediction over actions in [-1, 1], conditioned on observation features.

    :param obs_dim: size of the observation features
    :param action_dim: size of the action
    :param n_steps: number of diffusion steps T
    :param width: hidden width of the denoiser
    :param n_blocks: number of residual blocks of the denoiser
    :param dropout: dropout rate of the denoiser
    """

    def __init__(
        self, obs_dim: int, action_dim: int, n_steps: int = 10, width: int = 256, n_blocks: int = 3, dropout: float = 0.0
    ):
        super().__init__()
        self.action_dim = action_dim
        self.n_steps = n_steps
        self.denoiser = Denoiser(obs_dim, action_dim, width, n_blocks, dropout)
        betas = vp_beta_schedule(n_steps)
        alphas = 1.0 - betas
        # Constants of the schedule: buffers, so they follow `.to(device)` and are saved with the model.
        self.register_buffer("betas", betas)
        self.register_buffer("alphas", alphas)
        self.register_buffer("alpha_bars", th.cumprod(alphas, dim=0))
        # Set by ExpoPolicy: bf16 autocast of the denoiser while sampling. The fast sampler's constants: see
        # sampler_constants.
        self.mixed_precision = False
        self.sampler_schedule = sampler_constants(betas)

    default_steps = 10  # T of the paper

    def noise_draws(self) -> int:
        """T: x_T, then the ``z`` of every step but the last (:meth:`denoise`; :class:`sb3_expo.bases.ActionSampler`)."""
        return self.n_steps

    def loss(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """
        The DDPM loss (:func:`ddpm_loss`) of this policy's denoiser.

        :param obs: observation features ``(B, obs_dim)``
        :param actions: actions in [-1, 1] ``(B, action_dim)``
        """
        return ddpm_loss(self.denoiser, self.alpha_bars, obs, actions)

    def sample(self, obs: th.Tensor, noise: th.Tensor | None = None) -> th.Tensor:
        """
        Draw one action per row of ``obs`` with the reference's DDPM sampler: the numbers of :func:`ddpm_sample`,
        computed by the fast sampler (:meth:`denoise`). Repeat rows of ``obs`` to draw several actions per state.

        :param obs: observation features ``(B, obs_dim)``
        :param noise: all the sampler's Gaussian draws ``(T, B, action_dim)``, see :meth:`denoise`; drawn
            here by default
        :return: actions ``(B, action_dim)`` in [-1, 1]
        """
        if noise is None:
            noise = th.randn(self.n_steps, obs.shape[0], self.action_dim, device=obs.device)
        return self.denoise(obs, noise)

    def denoise(self, obs: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """
        The sampler as a deterministic function of its noise: ``noise[0]`` is x_T, ``noise[T - k]`` the
        ``z`` added at step k. Keeping the random draws outside makes this a function that can be compiled
        (:mod:`sb3_expo.acceleration`) and lets fast and plain paths be compared on identical inputs. Runs
        :meth:`denoise_eager`, on a CPU in row chunks (:func:`sb3_expo.backend.in_row_chunks`).

        :param obs: observation features ``(B, obs_dim)``
        :param noise: ``(T, B, action_dim)`` standard Gaussian draws
        :return: actions ``(B, action_dim)`` in [-1, 1]
        """
        return in_row_chunks(self.denoise_eager, obs, noise)

    def denoise_eager(self, obs: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """:func:`fast_ddpm_sample` with this policy's denoiser and schedule, eager, in one pass."""
        return fast_ddpm_sample(self.denoiser, self.sampler_schedule, obs, noise, self.mixed_precision)

    def denoise_plain(self, obs: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """:func:`ddpm_sample` with this policy's denoiser and schedule: the reference for :meth:`denoise`."""
        return ddpm_sample(self.denoiser, self.betas, obs, noise)


# ------------------------------------------------------------------------------------ the fast sampler
# The numbers of ddpm_sample, with fewer operations per step: the tiny configurations are bound by op
# overhead, the paper-size ones by the residual blocks' matmuls (sent to oneDNN by backend.linear).

SamplerConstants = list[tuple[int, float, float, float]]


def sampler_constants(betas: th.Tensor) -> SamplerConstants:
    """
    The sampler's constants per step k = T-1..0 as Python numbers, ``(k, (1-α_k)/√(1-ᾱ_k), 1/√α_k, √β_k)``:
    each step is then a few fused tensor ops instead of a dozen scalar ones.

    :param betas: β_0..β_{T-1} ``(T,)``
    """
    alphas = 1 - betas
    alpha_bars = th.cumprod(alphas, dim=0)
    return [
        (k, float((1 - alphas[k]) / (1 - alpha_bars[k]).sqrt()), float(alphas[k].rsqrt()), float(betas[k].sqrt()))
        for k in reversed(range(betas.shape[0]))
    ]


def fixed_input_terms(denoiser: Denoiser, obs: th.Tensor, t: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """
    The terms of the denoiser's input layer that stay fixed while one batch is denoised.

    The input layer computes ``W·[x; s; emb(k)] + b = W_x·x + (W_s·s + b) + W_t·emb(k)``, splitting
    ``W`` by columns. While sampling, ``s`` is fixed for a row and ``emb(k)`` for a step, so only
    ``W_x·x`` (``action_dim`` columns of ``action_dim + obs_dim + width``) changes from step to step;
    :func:`denoise_step` adds the two other terms, computed here once.

    :param denoiser: the denoiser
    :param obs: observation features ``(B, obs_dim)``
    :param t: integer time indices ``(T,)``
    :return: ``W_s·s + b`` ``(B, width)`` and ``W_t·emb(k)`` for each k ``(T, width)``
    """
    obs_start, time_start = denoiser.action_dim, denoiser.action_dim + obs.shape[-1]
    weight, bias = denoiser.input_layer.weight, denoiser.input_layer.bias
    # Column slices are strided; oneDNN's kernels need contiguous weights.
    obs_term = linear(obs, weight[:, obs_start:time_start].contiguous(), bias)
    time_terms = linear(denoiser.embed_time(t), weight[:, time_start:].contiguous())
    return obs_term, time_terms


def denoise_step(denoiser: Denoiser, noisy_action: th.Tensor, obs_term: th.Tensor, time_term: th.Tensor) -> th.Tensor:
    """
    ``denoiser.forward`` from the input layer's fixed terms (:func:`fixed_input_terms`): the same ε, with a
    ``(B, action_dim)`` matmul where ``forward`` has a ``(B, action_dim + obs_dim + width)`` one, and the
    layers through :func:`sb3_expo.backend.linear` (oneDNN, SiLU fused, where that pays).

    :param denoiser: the denoiser
    :param noisy_action: x_k ``(B, action_dim)``
    :param obs_term: ``W_s·s + b`` ``(B, width)``
    :param time_term: ``W_t·emb(k)`` ``(width,)``
    """
    action_weight = denoiser.input_layer.weight[:, : denoiser.action_dim]
    h = th.addmm(obs_term + time_term, noisy_action, action_weight.t())
    for block in denoiser.blocks:
        dropout, norm, expand, contract = block.net
        # One expression: the (B, 4·width) hidden activations are freed as soon as they are used.
        h = h + linear(linear(norm(dropout(h)), expand.weight, expand.bias, silu=True), contract.weight, contract.bias)
    output = denoiser.output_layer[-1]
    return linear(F.silu(h), output.weight, output.bias)


def fast_ddpm_sample(
    denoiser: Denoiser, constants: SamplerConstants, obs: th.Tensor, noise: th.Tensor, mixed_precision: bool = False
) -> th.Tensor:
    """
    :func:`ddpm_sample`'s numbers, faster: the schedule as Python numbers (:func:`sampler_constants`), the
    input layer's observation and time terms once per call (:func:`fixed_input_terms`), in-place updates.

    :param denoiser: the denoiser
    :param constants: :func:`sampler_constants` of the schedule
    :param obs: observation features ``(B, obs_dim)``
    :param noise: ``(T, B, action_dim)`` standard Gaussian draws, as in :func:`ddpm_sample`
    :param mixed_precision: run the denoiser in bfloat16 autocast (the update of x stays float32)
    :return: actions ``(B, action_dim)`` in [-1, 1]
    """
    n_steps = len(constants)
    x = noise[0]
    obs_term, time_terms = fixed_input_terms(denoiser, obs, th.arange(n_steps, device=obs.device))
    for k, eps_scale, inv_sqrt_alpha, noise_scale in constants:
        with th.autocast(obs.device.type, dtype=th.bfloat16, enabled=mixed_precision):
            eps = denoise_step(denoiser, x, obs_term, time_terms[k])
        # x <- (x - (1-α_k)/√(1-ᾱ_k) · ε) / √α_k  (+ √β_k · z when k > 0), then clip.
        x = x.sub(eps.float(), alpha=eps_scale).mul_(inv_sqrt_alpha)
        if k > 0:
            x = x.add_(noise[n_steps - k], alpha=noise_scale)
        x = x.clamp_(-1.0, 1.0)
    return x
