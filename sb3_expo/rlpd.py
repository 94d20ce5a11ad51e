"""
RLPD (Ball, Smith, Kostrikov, Levine, "Efficient Online Reinforcement Learning with Offline Data",
arXiv 2302.02948): the baseline EXPO is compared with, as SB3's SAC with what RLPD changes and nothing else.

- The critic is an ensemble of ``n_critics`` LayerNorm Q-networks (:class:`~sb3_expo.critics.CriticEnsemble`,
  the same module EXPO uses), evaluated in one batched pass.
- The TD target is the minimum over a random subset of ``critic_subset_size`` target critics, drawn anew
  for every critic update (REDQ), minus SAC's entropy term.
- The actor maximises the *mean* of the whole ensemble, not the minimum.
- ``policy_delay``: the actor and the temperature are updated after every ``policy_delay``-th critic
  update, on its minibatch. RLPD updates them once per UTD block (``policy_delay=gradient_steps``); the
  default 1 is SAC's schedule.

RLPD's symmetric sampling (half of every batch offline) is the replay buffer's job, as for EXPO::

    model = RLPD("MultiInputPolicy", env, gradient_steps=20, policy_delay=20,
                 replay_buffer_class=DictOfflineReplayBuffer, replay_buffer_kwargs=dict(offline_ratio=0.5))
    model.replay_buffer.attach_offline(load_minari(dataset_id))
    model.learn(100_000)

Everything else (the squashed-Gaussian actor, the temperature and its loss, Polyak targets, saving and
loading) is SB3's SAC unchanged.
"""

from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.policies import BaseModel, BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

from sb3_expo.critics import CriticEnsemble, random_subsets


class LayerNormCritic(BaseModel):
    """
    SB3's ``ContinuousCritic`` interface around :class:`~sb3_expo.critics.CriticEnsemble`:
    ``(Linear → LayerNorm → ReLU) × L → Linear 1`` per member. LayerNorm is what keeps RLPD's critics
    from extrapolating wildly on out-of-distribution actions of the offline data.

    Unlike ``ContinuousCritic``, which returns a tuple of ``(B, 1)`` tensors, :meth:`forward` returns
    one ``(E, B)`` tensor (and can run only some ``members``): :class:`RLPD` reduces it as RLPD does.

    :param observation_space: observation space
    :param action_space: action space
    :param net_arch: hidden layer sizes of every member
    :param features_extractor: observation features extractor
    :param features_dim: size of its output
    :param activation_fn: activation after each LayerNorm
    :param normalize_images: kept for SB3 compatibility
    :param n_critics: ensemble size E
    :param share_features_extractor: whether the extractor is the actor's (then the critic loss does not train it)
    """

    features_extractor: BaseFeaturesExtractor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 10,
        share_features_extractor: bool = False,
    ):
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        self.share_features_extractor = share_features_extractor
        self.n_critics = n_critics
        self.ensemble = CriticEnsemble(features_dim, get_action_dim(action_space), net_arch, n_critics, activation_fn)

    def forward(self, obs: Any, actions: th.Tensor, members: th.Tensor | None = None) -> th.Tensor:
        """
        :param obs: observations (a tensor or a dict of tensors), batch ``B``
        :param actions: actions ``(B, action_dim)`` in [-1, 1]
        :param members: indices of the members to run; all by default
        :return: Q-values ``(E, B)``, or ``(len(members), B)``
        """
        with th.set_grad_enabled(th.is_grad_enabled() and not self.share_features_extractor):
            features = self.extract_features(obs, self.features_extractor)
        return self.ensemble(features, actions, members)


class RLPDPolicy(SACPolicy):
    """SAC's policy (squashed-Gaussian actor) with the LayerNorm critic ensemble :class:`LayerNormCritic`."""

    critic: LayerNormCritic  # type: ignore[assignment]
    critic_target: LayerNormCritic  # type: ignore[assignment]

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> LayerNormCritic:  # type: ignore[override]
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return LayerNormCritic(**critic_kwargs).to(self.device)


MlpPolicy = RLPDPolicy


class MultiInputPolicy(RLPDPolicy):
    """:class:`RLPDPolicy` for Dict observations (SB3's ``CombinedExtractor``), e.g. goal-conditioned tasks."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class RLPD(SAC):
    """
    RLPD: SAC with a LayerNorm critic ensemble, a random-subset-minimum TD target and an ensemble-mean
    actor loss (module docstring). Offline data comes through the replay buffer
    (:class:`~sb3_expo.buffers.OfflineReplayBuffer` / :class:`~sb3_expo.buffers.DictOfflineReplayBuffer`).

    :param policy: "MlpPolicy", "MultiInputPolicy" or an :class:`RLPDPolicy` subclass
    :param env: the environment to learn from
    :param args: SAC's positional arguments after ``env`` (``learning_rate``, ``buffer_size``, ...)
    :param n_critics: ensemble size E (RLPD: 10)
    :param critic_subset_size: the TD target takes the minimum over this many target critics (RLPD: 2;
        1 on AntMaze)
    :param policy_delay: critic updates per actor and temperature update (RLPD: ``gradient_steps``, one per
        env step; SAC: 1)
    :param kwargs: SAC's keyword arguments (``gradient_steps`` is the UTD ratio; ``target_entropy="auto"``
        is SAC's ``-dim(A)``, RLPD's reference uses ``-dim(A)/2``)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy, "MultiInputPolicy": MultiInputPolicy}
    policy: RLPDPolicy
    critic: LayerNormCritic  # type: ignore[assignment]
    critic_target: LayerNormCritic  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[RLPDPolicy],
        env: Any,
        *args: Any,
        n_critics: int = 10,
        critic_subset_size: int = 2,
        policy_delay: int = 1,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        super().__init__(policy, env, *args, _init_setup_model=False, **kwargs)
        self.n_critics = n_critics
        self.critic_subset_size = critic_subset_size
        self.policy_delay = policy_delay
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if not 1 <= self.critic_subset_size <= self.n_critics:
            raise ValueError(f"critic_subset_size must be in [1, n_critics={self.n_critics}], got {self.critic_subset_size}")
        if self.policy_delay < 1:
            raise ValueError(f"policy_delay must be >= 1, got {self.policy_delay}")
        self.policy_kwargs["n_critics"] = self.n_critics
        super()._setup_model()

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """
        ``gradient_steps`` critic updates, each on a fresh minibatch, and an actor and temperature update
        after every ``policy_delay``-th of them (counted across calls), on that update's minibatch.
        """
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        self._update_learning_rate(optimizers)

        metrics: dict[str, list[float]] = {"critic_loss": [], "ent_coef": []}
        for gradient_step in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            ent_coef = self._current_ent_coef()
            target = self._td_target(data, ent_coef)
            q_values = self.critic(data.observations, data.actions)
            critic_loss = ((q_values - target) ** 2).mean()  # every member regresses on the same target
            self.critic.optimizer.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.critic.optimizer.step()
            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
            metrics["critic_loss"].append(critic_loss.item())
            metrics["ent_coef"].append(ent_coef.item())
            if (self._n_updates + gradient_step + 1) % self.policy_delay == 0:
                self._actor_step(data.observations, ent_coef, metrics)

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for name, values in metrics.items():
            self.logger.record(f"train/{name}", float(np.mean(values)))

    def _current_ent_coef(self) -> th.Tensor:
        """α, detached: the TD target and the actor loss treat the temperature as a constant."""
        if self.log_ent_coef is not None:
            return self.log_ent_coef.detach().exp()
        return self.ent_coef_tensor

    def _td_target(self, data: ReplayBufferSamples, ent_coef: th.Tensor) -> th.Tensor:
        """
        ``r + γ (1 - done) (min_{i ∈ S} Q'_i(s', a') - α log π(a'|s'))`` with ``a' ~ π(s')`` and ``S`` a fresh
        random subset of the target critics (one subset for the whole minibatch, as RLPD draws it).

        :return: the targets ``(B,)``
        """
        with th.no_grad():
            next_actions, next_log_prob = self.actor.action_log_prob(data.next_observations)
            members = random_subsets(self.n_critics, self.critic_subset_size, 1, self.device)[0]
            next_q = self.critic_target(data.next_observations, next_actions, members).min(dim=0).values
            next_q = next_q - ent_coef * next_log_prob.flatten()
            discounts = self.gamma if data.discounts is None else data.discounts.flatten()
            return data.rewards.flatten() + (1 - data.dones.flatten()) * discounts * next_q

    def _actor_step(self, obs: Any, ent_coef: th.Tensor, metrics: dict[str, list[float]]) -> None:
        """Actor loss ``α log π(a|s) - mean_i Q_i(s, a)`` over the whole ensemble, then SAC's temperature step."""
        if self.use_sde:
            self.actor.reset_noise()
        actions, log_prob = self.actor.action_log_prob(obs)
        # The actor loss must not leave gradients in the critic (only its Q-networks: a shared extractor is the actor's).
        self.critic.ensemble.requires_grad_(False)
        q_mean = self.critic(obs, actions).mean(dim=0)
        self.critic.ensemble.requires_grad_(True)
        actor_loss = (ent_coef * log_prob - q_mean).mean()
        self.actor.optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor.optimizer.step()
        metrics.setdefault("actor_loss", []).append(actor_loss.item())

        if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
            assert isinstance(self.target_entropy, float)
            ent_coef_loss = -(self.log_ent_coef * (log_prob.detach() + self.target_entropy)).mean()
            self.ent_coef_optimizer.zero_grad(set_to_none=True)
            ent_coef_loss.backward()
            self.ent_coef_optimizer.step()
            metrics.setdefault("ent_coef_loss", []).append(ent_coef_loss.item())
