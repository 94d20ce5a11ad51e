"""EXPO's policy: diffusion base + edit actor + critic ensemble, and the on-the-fly (OTF) action.

The action EXPO executes is not the output of one network. For each state it draws ``N`` actions
from the diffusion base policy, edits the first ``K`` of them with the edit actor, and executes the
candidate with the highest Q-value (docs/algorithm.md, "The on-the-fly action"). :class:`ExpoPolicy` holds every network that
takes part and implements that selection; the training losses live in :class:`sb3_expo.EXPO`.
"""

import copy
import hashlib
import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    get_actor_critic_arch,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch.nn import functional as F

from sb3_expo.backend import Linear
from sb3_expo.bases import ActionSampler, check_action_sampler
from sb3_expo.critics import CriticEnsemble, mlp_layers, random_subsets
from sb3_expo.diffusion import DiffusionPolicy, xavier_uniform_
from sb3_expo.flow import FlowPolicy
from sb3_expo.open_loop import OpenLoop, PendingChunks
from sb3_expo.validation import check_policy_options


class CandidateNoise(NamedTuple):
    """The Gaussian draws behind one set of OTF candidates (see :meth:`ExpoPolicy.propose_candidates`)."""

    base: th.Tensor  # (draws, B·N, action_dim): the base sampler's (DDPM: x_T and the step noises; flow: x_0)
    edit: th.Tensor  # (B·K, action_dim): the edit actor's reparameterised samples

    def rows(self, start: int, stop: int, n_base_samples: int, n_edit_samples: int) -> "CandidateNoise":
        """The draws of states ``start..stop-1`` only."""
        return CandidateNoise(
            self.base[:, start * n_base_samples : stop * n_base_samples],
            self.edit[start * n_edit_samples : stop * n_edit_samples],
        )


@dataclass
class OTFAction:
    """
    What :meth:`ExpoPolicy._predict` runs for the OTF action: :meth:`ExpoPolicy.select_action` itself, or its compiled
    graph, set once when the model is set up (:func:`sb3_expo.acceleration.accelerate`).
    """

    select: Callable[[th.Tensor, bool, "CandidateNoise | None"], th.Tensor]


# base_policy's names. A class or factory of one's own is built with the same arguments (sb3_expo.bases).
BASE_POLICIES: dict[str, Callable[..., nn.Module]] = {"ddpm": DiffusionPolicy, "flow": FlowPolicy}


def make_base(
    base_policy: str | Callable[..., nn.Module], obs_dim: int, action_dim: int, n_steps: int | None, **network: Any
) -> nn.Module:
    """
    The base policy that ``base_policy`` names (``"ddpm"``, ``"flow"``) or builds (a class or factory called as
    ``base_policy(obs_dim, action_dim, n_steps=..., width=..., n_blocks=..., dropout=...)``), checked against
    :class:`~sb3_expo.bases.ActionSampler`. ``n_steps=None``: the base's ``default_steps`` (10 without one).
    """
    if isinstance(base_policy, str) and base_policy not in BASE_POLICIES:
        raise ValueError(f"base_policy must be one of {sorted(BASE_POLICIES)} or a class / factory, got {base_policy!r}")
    build = BASE_POLICIES[base_policy] if isinstance(base_policy, str) else base_policy
    if not callable(build):
        raise TypeError(f"base_policy must be one of {sorted(BASE_POLICIES)} or a class / factory, got {base_policy!r}")
    n_steps = getattr(build, "default_steps", 10) if n_steps is None else n_steps
    base = build(obs_dim, action_dim, n_steps=n_steps, **network)
    check_action_sampler(base)
    return base


# The seed of the fixed draws behind deterministic actions (ExpoPolicy.fixed_noise).
DETERMINISTIC_NOISE_SEED = 0

# Same bounds as SB3's SAC actor.
LOG_STD_MIN, LOG_STD_MAX = -20, 2


def squashed_gaussian_log_prob(gaussian_sample: th.Tensor, mean: th.Tensor, log_std: th.Tensor) -> th.Tensor:
    """
    Log-density of ``tanh(z)``, ``z ~ N(mean, exp(log_std)²)``, summed over the last dimension.

    Uses the exact identity ``log(1 - tanh(z)²) = 2 (log 2 - z - softplus(-2z))`` instead of SB3's
    ``log(1 - tanh(z)² + 1e-6)``: edits are scaled by a small β, so a biased log-density would shift
    the entropy the temperature is tuned against.
    """
    gaussian_log_prob = -0.5 * ((gaussian_sample - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    log_det_tanh = 2 * (math.log(2) - gaussian_sample - F.softplus(-2 * gaussian_sample))
    return (gaussian_log_prob - log_det_tanh).sum(dim=-1)


class EditActor(nn.Module):
    """
    π_E(u | s, a): a tanh-Gaussian that proposes a bounded edit ``β·u``, ``u ∈ (-1, 1)^d``, of a base action.

    The log-probability returned is that of the edit ``β·u`` (not of ``u``): ``log π(u) - d·log β``,
    so the entropy the temperature controls is the entropy of what is actually added to the action.

    :param obs_dim: size of the observation features
    :param action_dim: size of the action
    :param net_arch: hidden layer sizes
    :param edit_scale: β, the largest change the edit can make to each action coordinate
    :param dropout: dropout rate after each hidden linear layer (the paper uses 0.1 on Adroit)
    :param activation_fn: activation function
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        net_arch: list[int],
        edit_scale: float,
        dropout: float = 0.0,
        activation_fn: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        layers, in_features = mlp_layers(
            obs_dim + action_dim,
            net_arch,
            lambda n_in, n_out: [xavier_uniform_(Linear(n_in, n_out)), nn.Dropout(dropout), activation_fn()],
        )
        self.latent = nn.Sequential(*layers)
        # Xavier-uniform weights and zero biases everywhere, as the reference (not PyTorch's default init).
        self.mu = xavier_uniform_(Linear(in_features, action_dim))
        self.log_std = xavier_uniform_(Linear(in_features, action_dim))
        self.edit_scale = edit_scale
        # log|det| of the scaling u -> β·u: the edit's density is u's density divided by β^d.
        self.scaling_log_det = action_dim * math.log(edit_scale)

    def forward(
        self, obs: th.Tensor, actions: th.Tensor, deterministic: bool = False, noise: th.Tensor | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        :param obs: observation features ``(B, obs_dim)``
        :param actions: base actions to edit ``(B, action_dim)``
        :param deterministic: use the mode ``tanh(μ)`` instead of a (reparameterised) sample
        :param noise: the standard Gaussian draw of the sample ``(B, action_dim)``; drawn here by default
        :return: the edit ``β·u`` ``(B, action_dim)`` and its log-probability ``(B,)``
        """
        latent = self.latent(th.cat([obs, actions], dim=-1))
        mean = self.mu(latent)
        log_std = self.log_std(latent).clamp(LOG_STD_MIN, LOG_STD_MAX)
        if noise is None and not deterministic:
            noise = th.randn_like(mean)
        gaussian_sample = mean if deterministic else mean + log_std.exp() * noise
        log_prob = squashed_gaussian_log_prob(gaussian_sample, mean, log_std) - self.scaling_log_det
        return self.edit_scale * th.tanh(gaussian_sample), log_prob


def check_no_image_keys(
    observation_space: spaces.Space, extractor_class: type[BaseFeaturesExtractor], extractor_kwargs: dict[str, Any]
) -> None:
    """
    Refuse image keys of a Dict observation before SB3's ``CombinedExtractor`` puts a CNN on them: EXPO has no
    convolutional policy (its networks would each need their own CNN), and a small image made SB3's CNN fail with a
    kernel-size error that named neither EXPO nor the key.
    """
    if not (isinstance(observation_space, spaces.Dict) and issubclass(extractor_class, CombinedExtractor)):
        return
    normalized = extractor_kwargs.get("normalized_image", False)
    images = [key for key, space in observation_space.spaces.items() if is_image_space(space, normalized_image=normalized)]
    if images:
        shapes = ", ".join(f"{key!r} {observation_space[key].shape}" for key in images)
        raise ValueError(
            f"EXPO has no convolutional policy, and the Dict observation has image keys ({shapes}) that "
            "MultiInputPolicy's CombinedExtractor would give a CNN. Drop them (the env's low-dimensional state is what "
            "EXPO learns from), or turn them into float vectors with a wrapper (gymnasium's TransformObservation / "
            "FlattenObservation) so that they are read flattened."
        )


def default_optimizer_kwargs(optimizer_class: type[th.optim.Optimizer]) -> dict[str, Any]:
    """Adam and AdamW step with their fused kernel (CPU and GPU): the same update, far fewer kernel launches."""
    return {"fused": True} if optimizer_class in (th.optim.Adam, th.optim.AdamW) else {}


class ExpoPolicy(BasePolicy):
    """
    Policy class for EXPO: the networks and the on-the-fly action of docs/algorithm.md.

    - ``base``: the diffusion policy π_B, trained by imitation; ``base_ema``: its Polyak average, used for acting.
    - ``edit_actor``: π_E, trained to maximise Q.
    - ``critic`` / ``critic_target``: the LayerNorm Q-ensemble and its Polyak target (used to score candidates).

    Observations go through one parameter-free features extractor (``FlattenExtractor`` for Box,
    ``CombinedExtractor`` for Dict observations of vectors) shared by all networks. Learned
    extractors (CNNs) are not supported: the base, the edit actor and the critic would each need their
    own, trained by different losses.

    :param observation_space: Observation space
    :param action_space: Action space (Box with finite bounds)
    :param lr_schedule: Learning rate schedule (initial value used to build the optimisers)
    :param net_arch: hidden layers of the critic and the edit actor: a list (both) or ``dict(pi=..., qf=...)``
    :param activation_fn: activation of the critic and the edit actor
    :param n_critics: ensemble size E
    :param denoiser_width: hidden width of the denoiser (the paper: 256)
    :param denoiser_blocks: residual blocks of the denoiser (the paper: 3)
    :param denoiser_dropout: dropout in the denoiser's residual blocks
    :param base_policy: the base policy: ``"ddpm"`` (the paper's DDPM), ``"flow"`` (a rectified flow, sampled in fewer
        Euler steps), or a class / factory of one's own (:mod:`sb3_expo.bases`, docs/algorithm.md)
    :param diffusion_steps: T, denoising (or Euler) steps of the base policy; ``None``: the base's default (DDPM: 10,
        flow: :attr:`sb3_expo.flow.FlowPolicy.default_steps`)
    :param edit_scale: β, the edit actor changes each action coordinate by at most β (actions in [-1, 1])
    :param edit_dropout: dropout in the edit actor's hidden layers
    :param n_base_samples: N, base-policy samples per state
    :param n_edit_samples: K ≤ N, how many of the base samples are also edited
    :param critic_subset_size: size of the random subset of target critics whose minimum scores candidates
    :param mixed_precision: sample from the diffusion base (and its EMA) with the denoiser in bfloat16 autocast
    :param action_chunk: h, actions per decision: the base, the edit actor and the critics work on chunks of ``h``
        actions (flattened, ``h × action_dim``), and :meth:`predict` executes each chosen chunk over ``h`` calls
    :param features_extractor_class: parameter-free features extractor
    :param features_extractor_kwargs: its keyword arguments
    :param normalize_images: kept for SB3 compatibility
    :param optimizer_class: optimiser of the critic and the edit actor
    :param optimizer_kwargs: its keyword arguments (excluding the learning rate); default ``{"fused": True}``
        for Adam and AdamW, whose fused step is one kernel per optimiser instead of a dozen ops per tensor
    :param base_optimizer_class: optimiser of the diffusion base policy
    :param base_optimizer_kwargs: its keyword arguments; default ``{"weight_decay": 1e-4}`` as in the paper,
        plus ``"fused": True`` for Adam and AdamW
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        n_critics: int = 10,
        denoiser_width: int = 256,
        denoiser_blocks: int = 3,
        denoiser_dropout: float = 0.0,
        base_policy: str | Callable[..., nn.Module] = "ddpm",
        diffusion_steps: int | None = None,
        edit_scale: float = 0.7,
        edit_dropout: float = 0.0,
        n_base_samples: int = 8,
        n_edit_samples: int = 8,
        critic_subset_size: int = 2,
        mixed_precision: bool = False,
        action_chunk: int = 1,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        base_optimizer_class: type[th.optim.Optimizer] = th.optim.AdamW,
        base_optimizer_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=default_optimizer_kwargs(optimizer_class) if optimizer_kwargs is None else optimizer_kwargs,
            squash_output=True,
            normalize_images=normalize_images,
        )
        check_policy_options(locals())
        if edit_scale > 1:
            warnings.warn(
                f"edit_scale (β) = {edit_scale} > 1: an edit can move an action by more than half the width of the action "
                "space (actions are in [-1, 1]), so edited candidates are mostly clipped to the bounds. The paper uses "
                "0.05-0.7.",
                stacklevel=2,
            )

        self.net_arch = [256, 256, 256] if net_arch is None else net_arch
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.critic_subset_size = critic_subset_size
        self.n_base_samples = n_base_samples
        self.n_edit_samples = n_edit_samples
        self.edit_scale = edit_scale
        self.base_policy = base_policy
        self.diffusion_steps = diffusion_steps
        self.denoiser_width = denoiser_width
        self.denoiser_blocks = denoiser_blocks
        self.denoiser_dropout = denoiser_dropout
        self.edit_dropout = edit_dropout
        self.mixed_precision = mixed_precision
        self.action_chunk = action_chunk
        self.open_loop = OpenLoop(action_chunk, observation_space, action_space.shape)  # chunks between predict() calls
        self.base_optimizer_class = base_optimizer_class
        if base_optimizer_kwargs is None:
            base_optimizer_kwargs = {"weight_decay": 1e-4, **default_optimizer_kwargs(base_optimizer_class)}
        self.base_optimizer_kwargs = base_optimizer_kwargs
        self._build(lr_schedule)
        self.otf_action = OTFAction(self.select_action)  # sb3_expo.acceleration may make it a graph

    def _build(self, lr_schedule: Schedule) -> None:
        check_no_image_keys(self.observation_space, self.features_extractor_class, self.features_extractor_kwargs)
        self.features_extractor = self.make_features_extractor()
        if any(True for _ in self.features_extractor.parameters()):
            raise ValueError(
                f"EXPO supports only parameter-free features extractors (FlattenExtractor, CombinedExtractor on vector "
                f"observations); {type(self.features_extractor).__name__} has trainable parameters (image observations?)."
            )
        obs_dim = self.features_extractor.features_dim
        action_dim = int(math.prod(self.action_space.shape)) * self.action_chunk  # a chunk is one action of h × A
        actor_arch, critic_arch = get_actor_critic_arch(self.net_arch)

        self.base = make_base(
            self.base_policy, obs_dim, action_dim, self.diffusion_steps, width=self.denoiser_width,
            n_blocks=self.denoiser_blocks, dropout=self.denoiser_dropout,
        )  # fmt: skip
        self.diffusion_steps = self.base.n_steps
        self.base.mixed_precision = self.mixed_precision
        self.base_ema = copy.deepcopy(self.base).requires_grad_(False)
        self.edit_actor = EditActor(obs_dim, action_dim, actor_arch, self.edit_scale, self.edit_dropout, self.activation_fn)
        self.critic = CriticEnsemble(obs_dim, action_dim, critic_arch, self.n_critics, self.activation_fn)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

        lr = lr_schedule(1)  # type: ignore[call-arg]
        self.base.optimizer = self.base_optimizer_class(self.base.parameters(), lr=lr, **self.base_optimizer_kwargs)
        self.edit_actor.optimizer = self.optimizer_class(self.edit_actor.parameters(), lr=lr, **self.optimizer_kwargs)
        self.critic.optimizer = self.optimizer_class(self.critic.parameters(), lr=lr, **self.optimizer_kwargs)
        # The averaged copies are never trained: keep them in eval mode.
        self.base_ema.eval()
        self.critic_target.eval()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            n_critics=self.n_critics,
            critic_subset_size=self.critic_subset_size,
            n_base_samples=self.n_base_samples,
            n_edit_samples=self.n_edit_samples,
            edit_scale=self.edit_scale,
            base_policy=self.base_policy,
            diffusion_steps=self.diffusion_steps,
            denoiser_width=self.denoiser_width,
            denoiser_blocks=self.denoiser_blocks,
            denoiser_dropout=self.denoiser_dropout,
            edit_dropout=self.edit_dropout,
            mixed_precision=self.mixed_precision,
            action_chunk=self.action_chunk,
            lr_schedule=self._dummy_schedule,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            base_optimizer_class=self.base_optimizer_class,
            base_optimizer_kwargs=self.base_optimizer_kwargs,
            features_extractor_class=self.features_extractor_class,
            features_extractor_kwargs=self.features_extractor_kwargs,
        )
        return data

    # ---------------------------------------------------------------- on-the-fly action (docs/algorithm.md)

    @property
    def uses_dropout(self) -> bool:
        """Whether any network has dropout, so that switching the training mode changes what it computes."""
        return self.denoiser_dropout > 0 or self.edit_dropout > 0

    def candidate_noise(self, batch_size: int) -> CandidateNoise:
        """
        Every Gaussian draw that :meth:`propose_candidates` makes for ``batch_size`` states, drawn in
        this order: the base sampler's, then the edits'.
        """
        action_dim = self.edit_actor.mu.out_features
        rows = batch_size * self.n_base_samples
        return CandidateNoise(
            base=th.randn(self.base.noise_draws(), rows, action_dim, device=self.device),
            edit=th.randn(batch_size * self.n_edit_samples, action_dim, device=self.device),
        )

    def fixed_noise(self, obs_features: th.Tensor) -> CandidateNoise:
        """
        The draws behind deterministic actions: each state's own, from a CPU generator seeded with a hash of the
        state's features and :data:`DETERMINISTIC_NOISE_SEED`. A diffusion policy has no mode; with fixed draws the
        OTF action (the best by Q of ``N`` base samples and their edits) becomes a function of the observation and
        the weights alone: the same at every call, whatever the other rows of the batch and the global RNG (which it
        leaves untouched). Draws shared by every state made the same error at every state instead (on PointMaze,
        deterministic success 0.70 against 0.99-1.00 with the stochastic action; 1.00 with per-state draws; and
        0.25-0.35 with action chunks, whose tail repeated the error open-loop: docs/algorithm.md).
        """
        action_dim, draws = self.edit_actor.mu.out_features, self.base.noise_draws()
        base, edit = [], []
        for state in obs_features.detach().float().cpu().numpy():
            digest = hashlib.blake2b(state.tobytes(), key=DETERMINISTIC_NOISE_SEED.to_bytes(8, "little"), digest_size=8)
            generator = th.Generator().manual_seed(int.from_bytes(digest.digest(), "little") >> 1)
            base.append(th.randn(draws, self.n_base_samples, action_dim, generator=generator))
            edit.append(th.randn(self.n_edit_samples, action_dim, generator=generator))
        return CandidateNoise(th.cat(base, dim=1).to(self.device), th.cat(edit).to(self.device))

    def propose_candidates(
        self,
        obs_features: th.Tensor,
        base: ActionSampler,
        deterministic: bool = False,
        noise: CandidateNoise | None = None,
    ) -> th.Tensor:
        """
        The OTF candidate set: ``N`` base samples per state, then the first ``K`` of them edited,
        ``clip(a + β·u, -1, 1)``.

        :param obs_features: ``(B, obs_dim)``
        :param base: which base weights sample: ``base_ema`` to act, ``base`` for TD targets
        :param deterministic: edits use the mode ``tanh(μ)``; base samples are draws of ``noise`` either way
        :param noise: the random draws to use (:meth:`candidate_noise`); fresh ones by default. With the
            same noise, the candidates of a batch equal those of its slices computed separately.
        :return: candidates ``(B, N + K, action_dim)``
        """
        batch_size, n, k = obs_features.shape[0], self.n_base_samples, self.n_edit_samples
        noise = self.candidate_noise(batch_size) if noise is None else noise
        base_actions = base.sample(obs_features.repeat_interleave(n, dim=0), noise.base).view(batch_size, n, -1)
        to_edit = base_actions[:, :k].reshape(batch_size * k, -1)
        edits, _ = self.edit_actor(obs_features.repeat_interleave(k, dim=0), to_edit, deterministic, noise.edit)
        edited = (to_edit + edits).clamp(-1.0, 1.0).view(batch_size, k, -1)
        return th.cat([base_actions, edited], dim=1)

    def score_candidates(self, obs_features: th.Tensor, candidates: th.Tensor, members: th.Tensor | None = None) -> th.Tensor:
        """
        Q-values of the target critics for every candidate.

        :param obs_features: ``(B, obs_dim)``
        :param candidates: ``(B, C, action_dim)``
        :param members: indices ``(k,)`` of the target critics to evaluate; all ``E`` by default
        :return: ``(E, B, C)``, or ``(k, B, C)`` with ``members``
        """
        obs_features = obs_features.unsqueeze(1).expand(-1, candidates.shape[1], -1)
        return self.critic_target(obs_features, candidates, members)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """
        The OTF action with the EMA base weights: the candidate that maximises the minimum of a random
        subset of ``critic_subset_size`` target critics (what EXPO executes while it learns).

        With ``deterministic=True`` the base samples come from fixed draws (:meth:`fixed_noise`), the edits
        use their mode ``tanh(μ)`` and candidates are ranked by the mean of all target critics: the same
        observation always gives the same action, and each row of a batch the action it has alone.
        """
        obs_features = self.extract_features(observation, self.features_extractor)
        noise = self.fixed_noise(obs_features) if deterministic else None
        return self.otf_action.select(obs_features, deterministic, noise)

    def select_action(self, obs_features: th.Tensor, deterministic: bool, noise: CandidateNoise | None) -> th.Tensor:
        """The OTF action of :meth:`_predict`; ``noise``: its candidates' draws (fresh ones when ``None``)."""
        candidates = self.propose_candidates(obs_features, self.base_ema, deterministic, noise)
        if deterministic:
            scores = self.score_candidates(obs_features, candidates).mean(dim=0)
        else:
            subset = random_subsets(self.n_critics, self.critic_subset_size, 1, candidates.device)[0]
            scores = self.score_candidates(obs_features, candidates, subset).min(dim=0).values
        best = scores.argmax(dim=1)
        return candidates[th.arange(candidates.shape[0], device=best.device), best]

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: PendingChunks | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, PendingChunks | None]:
        """
        SB3's ``predict``. With ``action_chunk`` h > 1 each env executes its chosen chunk over h calls, open-loop, and
        plans the next at the call after (:mod:`sb3_expo.open_loop`); a restarted episode plans at once. Given a
        ``state`` or ``episode_start`` (SB3's ``evaluate_policy`` and rl-zoo's ``enjoy`` pass both), the pending
        chunks travel in ``state``, as a recurrent policy's do; otherwise the policy keeps them (SB3's rollouts, a
        plain loop) and :meth:`end_chunks` drops an env's chunk when its episode ends.
        """
        if self.action_chunk == 1:
            return super().predict(observation, state, episode_start, deterministic)
        plan = lambda obs: super(ExpoPolicy, self).predict(obs, deterministic=deterministic)[0]  # noqa: E731
        return self.open_loop.predict(plan, observation, state, episode_start)

    def end_chunks(self, dones: np.ndarray) -> None:
        """The episodes of the envs where ``dones`` ended: their chunks are not continued into the next one."""
        self.open_loop.end_episodes(dones)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def set_training_mode(self, mode: bool) -> None:
        """Dropout on or off in the trained networks; the EMA base and the target critics stay in eval mode."""
        if mode == self.training == self.base.training == self.edit_actor.training == self.critic.training:
            return  # already so (nn.Module.train walks every submodule, at every train() call)
        self.base.train(mode)
        self.edit_actor.train(mode)
        self.critic.train(mode)
        self.training = mode


MlpPolicy = ExpoPolicy


class MultiInputPolicy(ExpoPolicy):
    """:class:`ExpoPolicy` for Dict observations (e.g. goal-conditioned tasks); see its parameters."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        **kwargs: Any,
    ):
        super().__init__(
            observation_space, action_space, lr_schedule, features_extractor_class=features_extractor_class, **kwargs
        )


def policy_option_defaults(names: tuple[str, ...]) -> dict[str, Any]:
    """:class:`ExpoPolicy`'s defaults of the options ``names``: the one place where they are written."""
    parameters = inspect.signature(ExpoPolicy.__init__).parameters
    return {name: parameters[name].default for name in names}
