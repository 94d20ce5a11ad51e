"""EXPO: Expressive Policy Optimization (Dong, Li, Sadigh, Finn, 2025), as an SB3 off-policy algorithm."""

import math
import warnings
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, ReplayBufferSamples, Schedule
from stable_baselines3.common.utils import polyak_update

from sb3_expo.acceleration import UpdateSteps, accelerate
from sb3_expo.checks import check_finite_losses
from sb3_expo.critics import random_subsets
from sb3_expo.data import OfflineSource, OfflineTransitions
from sb3_expo.loading import ReloadChecks
from sb3_expo.offline import DEFAULT_OFFLINE_RATIO, OfflineToOnline
from sb3_expo.policies import ExpoPolicy, MlpPolicy, MultiInputPolicy, policy_option_defaults
from sb3_expo.safeguards import Safeguards
from sb3_expo.update import (
    Minibatch,
    TrainMetrics,
    cosine_decay,
    critic_loss,
    guarded_step,
    set_learning_rate,
    td_target,
)
from sb3_expo.validation import check_algorithm_settings

__all__ = ["DEFAULT_OFFLINE_RATIO", "EXPO", "LOG_ENT_COEF_MAX", "LOG_ENT_COEF_MIN", "cosine_decay", "td_target"]

# edit_scale="auto": small edits of a base that imitates offline data, large ones when learning from scratch.
EDIT_SCALE_WITH_DATA, EDIT_SCALE_FROM_SCRATCH = 0.1, 0.7

# log α is clamped to this range after every temperature step, so α (and every loss it scales) stays finite.
LOG_ENT_COEF_MIN, LOG_ENT_COEF_MAX = -20.0, 20.0


def merge_policy_options(policy_kwargs: dict[str, Any], **options: Any) -> dict[str, Any]:
    """
    A copy of ``policy_kwargs`` holding every one of EXPO's policy options, which is where EXPO reads them back from.
    An option EXPO was given (not None) wins; one left at None keeps its ``policy_kwargs`` value, as SB3 users write
    ``policy_kwargs=dict(n_critics=5)``, or takes :class:`~sb3_expo.policies.ExpoPolicy`'s default (the one place a
    default is written). The same option in both with different values is an error. A copy, so that one dict can
    configure several models (rl-zoo's trials share one).
    """
    given = {key: value for key, value in options.items() if value is not None}
    conflicts = [f"policy_kwargs {key}={policy_kwargs[key]!r} vs EXPO {key}={value!r}" for key, value in given.items()
                 if key in policy_kwargs and policy_kwargs[key] != value]  # fmt: skip
    if conflicts:
        raise ValueError(f"Options given twice with different values ({', '.join(conflicts)}): pass each one once")
    return {**policy_option_defaults(tuple(options)), **policy_kwargs, **given}


def resolve_edit_scale(edit_scale: float | str, with_data: bool, policy_kwargs: dict[str, Any]) -> float | str | None:
    """``edit_scale="auto"`` decided by whether offline data is given; None (left to it) when ``policy_kwargs`` sets one."""
    if edit_scale != "auto" or "edit_scale" in policy_kwargs:
        return None if edit_scale == "auto" else edit_scale
    return EDIT_SCALE_WITH_DATA if with_data else EDIT_SCALE_FROM_SCRATCH


BASE_IMITATES = ("offline_and_successes", "all")


def check_update_schedule(gradient_steps: int, policy_delay: int, base_ema_rate: float, base_imitates: str) -> None:
    """Refuse an update schedule that would train nothing or diverge (ExpoPolicy checks the network options)."""
    if base_imitates not in BASE_IMITATES:
        raise ValueError(f"base_imitates must be one of {BASE_IMITATES}, got {base_imitates!r}")
    if policy_delay < 1:
        raise ValueError(f"policy_delay must be >= 1, got {policy_delay}")
    if not 0 < base_ema_rate <= 1:
        raise ValueError(f"base_ema_rate must be in (0, 1], got {base_ema_rate}")
    if gradient_steps == 0 or gradient_steps < -1:
        raise ValueError(
            f"gradient_steps must be >= 1 (critic updates per train() call, the paper's UTD ratio: 20) or -1 "
            f"(as many as env steps were collected), got {gradient_steps}: with 0 EXPO would never train"
        )


def _read_from_policy(name: str) -> property:
    """
    ``name`` read back from the policy that owns it; before the policy is built, from ``policy_kwargs``, or the
    policy's default for an option that a model saved before it existed does not hold.
    """

    def read(self: "EXPO") -> Any:
        if hasattr(self, "policy"):
            return getattr(self.policy, name)
        return self.policy_kwargs[name] if name in self.policy_kwargs else policy_option_defaults((name,))[name]

    return property(read, doc=f"``{name}``, read back from the policy (its one home)")


class EXPO(ReloadChecks, Safeguards, OfflineToOnline, OffPolicyAlgorithm):
    """
    Expressive Policy Optimization (EXPO): online RL with an expressive diffusion policy, without back-propagating
    Q through the denoising chain. Paper: https://arxiv.org/abs/2507.07986. The algorithm: ``docs/algorithm.md``.

    A diffusion *base* policy imitates the buffer's actions; an *edit* actor learns small Q-improving changes
    ``β·u`` of them; LayerNorm critics learn by TD on the *on-the-fly* (OTF) action, the best by Q of ``N`` base
    samples and ``K`` edited ones, which is also the action executed. Defaults are the paper's (use a GPU there).

    :param policy: the policy model to use ("MlpPolicy" for Box, "MultiInputPolicy" for Dict observations)
    :param env: the environment to learn from (if registered in Gymnasium, can be str)
    :param learning_rate: learning rate of every optimiser, or a function of the remaining progress (1 to 0)
    :param buffer_size: size of the online replay buffer
    :param learning_starts: env steps of uniform random actions before learning starts (0 after pretraining)
    :param batch_size: minibatch size of every update
    :param tau: Polyak rate of the target critics, after every critic update
    :param gamma: discount factor
    :param train_freq: update the model every ``train_freq`` steps, or a tuple like ``(5, "step")``
    :param gradient_steps: critic updates per ``train()`` call: the paper's UTD ratio (20)
    :param policy_delay: critic updates per base / edit-actor / temperature update, counted across calls
    :param action_noise: optional extra action noise (not used by the paper)
    :param replay_buffer_class: replay buffer class (default: SB3's, or an offline-mixing one when needed)
    :param replay_buffer_kwargs: keyword arguments of the replay buffer
    :param optimize_memory_usage: SB3's memory-efficient replay buffer variant
    :param offline_dataset: offline data mixed into every batch: a Minari id, a D4RL or robomimic ``.hdf5`` path,
        or :class:`~sb3_expo.data.OfflineTransitions` (an id or path is saved with the model, data never)
    :param offline_dataset_kwargs: keyword arguments of the loader (``download=True``, ``obs_keys=[...]``, ...)
    :param offline_ratio: share of offline transitions in every minibatch once the online buffer holds data
    :param reward_scale: every sampled reward, offline and online, becomes ``r * reward_scale + reward_shift``
    :param reward_shift: see ``reward_scale`` (the paper's AntMaze setting: -1)
    :param n_critics: size E of the critic ensemble (10)
    :param critic_subset_size: size of the random subset of target critics whose minimum scores candidates and targets (2)
    :param n_base_samples: N, base-policy samples per state in the OTF action (8)
    :param n_edit_samples: K ≤ N, how many of the base samples are also edited (8)
    :param edit_scale: β, the largest edit of an action coordinate (actions in [-1, 1]). ``"auto"``: 0.1 with an
        ``offline_dataset`` (the paper's offline-to-online and robomimic settings are 0.05-0.1), else 0.7 (its Adroit
        setting, learning from scratch); docs/algorithm.md, "Fine-tuning recipe"
    :param action_chunk: h, actions per decision (1): with h > 1 EXPO plans and learns on chunks of h actions, each
        executed open-loop, with the SMDP backup over the steps a chunk lasted (docs/algorithm.md, "Action chunks")
    :param diffusion_steps: T, denoising steps of the base policy (10); Euler steps with
        ``policy_kwargs=dict(base_policy="flow")``, a rectified-flow base (its default: ``FlowPolicy.default_steps``)
    :param base_ema_rate: Polyak rate of the EMA base policy used for acting, per base update
    :param policy_lr_decay_steps: base and edit-actor learning rates decay to 0 over this many updates (``None``: never)
    :param base_imitates: what the base policy imitates online: ``"offline_and_successes"`` (offline data and online
        episodes that ended with ``info["is_success"]``, so that it never learns the policy's own failures; the whole
        buffer while no offline data is attached) or ``"all"`` (every buffer row, the paper's; docs/algorithm.md)
    :param ent_coef: temperature α of the edit actor: "auto" (learned from 1), "auto_0.1" (from 0.1) or a float
    :param target_entropy: target entropy of the edit ``β·u``; "auto" is ``-d/2 + d·log β`` (docs/algorithm.md)
    :param compile_mode: ``None`` (eager) or a ``torch.compile`` mode: each critic step, each policy step, the TD-target
        candidates and the OTF action become one graph each (Adam / AdamW). ``"auto"``: on a CPU, compiled where
        measured faster (the TD-target sampler only when small or in bf16); eager on GPUs for now
    :param mixed_precision: sample candidates with the denoiser in bfloat16 autocast (GPUs, CPUs with AMX / AVX-512 BF16;
        default False)
    :param stats_window_size: window size of the rollout logging (episodes)
    :param tensorboard_log: the log location for TensorBoard (if None, no logging)
    :param policy_kwargs: arguments of :class:`~sb3_expo.policies.ExpoPolicy` (``net_arch``, ``denoiser_width``, ...). The
        options above that EXPO also takes (``n_critics`` ... ``mixed_precision``; left at None) may be given here
        instead, as in SB3 (``policy_kwargs=dict(n_critics=5)``); the defaults in brackets are ExpoPolicy's
    :param verbose: 0 no output, 1 info, 2 debug
    :param seed: seed of the pseudo-random generators
    :param device: "cpu", "cuda", or "auto" (CUDA when available)
    :param _init_setup_model: whether to build the networks at creation
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy, "MultiInputPolicy": MultiInputPolicy}
    policy: ExpoPolicy
    n_critics = _read_from_policy("n_critics")
    critic_subset_size = _read_from_policy("critic_subset_size")
    n_base_samples = _read_from_policy("n_base_samples")
    n_edit_samples = _read_from_policy("n_edit_samples")
    edit_scale = _read_from_policy("edit_scale")
    diffusion_steps = _read_from_policy("diffusion_steps")
    mixed_precision = _read_from_policy("mixed_precision")
    action_chunk = _read_from_policy("action_chunk")

    def __init__(
        self,
        policy: str | type[ExpoPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 5000,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 20,
        policy_delay: int = 20,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        offline_dataset: OfflineSource | None = None,
        offline_dataset_kwargs: dict[str, Any] | None = None,
        offline_ratio: float = DEFAULT_OFFLINE_RATIO,
        reward_scale: float = 1.0,
        reward_shift: float = 0.0,
        n_critics: int | None = None,
        critic_subset_size: int | None = None,
        n_base_samples: int | None = None,
        n_edit_samples: int | None = None,
        edit_scale: float | str = "auto",
        diffusion_steps: int | None = None,
        action_chunk: int | None = None,
        base_ema_rate: float = 0.001,
        policy_lr_decay_steps: int | None = 3_000_000,
        base_imitates: str = "offline_and_successes",
        ent_coef: str | float = "auto",
        target_entropy: str | float = "auto",
        compile_mode: str | None = "auto",
        mixed_precision: bool | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        super().__init__(
            policy, env, learning_rate, buffer_size, learning_starts, batch_size, tau, gamma, train_freq, gradient_steps,
            action_noise, replay_buffer_class=replay_buffer_class, replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage, policy_kwargs=policy_kwargs, stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log, verbose=verbose, device=device, seed=seed, sde_support=False,
            supported_action_spaces=(spaces.Box,), support_multi_env=True,
        )  # fmt: skip
        self.policy_delay = policy_delay
        self.offline_dataset = offline_dataset
        self.offline_dataset_kwargs = offline_dataset_kwargs or {}
        self.offline_ratio = offline_ratio
        self.reward_scale = reward_scale
        self.reward_shift = reward_shift
        self.base_ema_rate = base_ema_rate
        self.policy_lr_decay_steps = policy_lr_decay_steps
        self.base_imitates = base_imitates
        self.ent_coef = ent_coef
        self.target_entropy = target_entropy
        self.compile_mode = compile_mode
        self.resolved_compile_mode: str | None = None  # compile_mode with "auto" decided, at set-up
        edit_scale = resolve_edit_scale(edit_scale, offline_dataset is not None, self.policy_kwargs)
        self.policy_kwargs = merge_policy_options(
            self.policy_kwargs, n_critics=n_critics, critic_subset_size=critic_subset_size, n_base_samples=n_base_samples,
            n_edit_samples=n_edit_samples, edit_scale=edit_scale, diffusion_steps=diffusion_steps,
            mixed_precision=mixed_precision, action_chunk=action_chunk,
        )  # fmt: skip
        self.log_ent_coef: th.Tensor | None = None
        self.ent_coef_optimizer: th.optim.Adam | None = None
        self._n_policy_updates = 0
        self._n_base_updates = 0
        self._n_pretrain_steps = 0  # the step axis of pretrain/* in TensorBoard: imitation steps and critic blocks
        self._run_opened_by_pretrain = False  # see learn()
        self._offline_transitions: OfflineTransitions | None = None  # to re-attach after load_replay_buffer; never saved
        if str(device).startswith("cuda") and self.device.type != "cuda":  # SB3 falls back to the CPU without a word
            warnings.warn(f"device={device!r} but CUDA is not available: EXPO runs on the CPU", stacklevel=2)
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------------------------------ set-up

    def _get_policy_from_name(self, policy_name: str) -> type[BasePolicy]:
        if policy_name not in self.policy_aliases:
            raise ValueError(
                f"Policy {policy_name!r} unknown: EXPO's policies are {sorted(self.policy_aliases)} "
                "('MultiInputPolicy' for Dict observations), or an ExpoPolicy subclass"
            )
        return super()._get_policy_from_name(policy_name)

    def _setup_model(self) -> None:
        check_algorithm_settings(vars(self))
        check_update_schedule(self.gradient_steps, self.policy_delay, self.base_ema_rate, self.base_imitates)
        self._choose_replay_buffer()
        super()._setup_model()
        self.base, self.base_ema, self.edit_actor = self.policy.base, self.policy.base_ema, self.policy.edit_actor
        self.critic, self.critic_target = self.policy.critic, self.policy.critic_target
        if self.offline_dataset is not None:
            self.attach_offline_data(self.offline_dataset)
        self._setup_temperature()
        self.resolved_compile_mode, self.steps = accelerate(self)  # speed, applied from one place

    def _setup_temperature(self) -> None:
        """The target entropy of the edits, and α: learned (log α with its optimiser) or fixed."""
        action_dim = int(np.prod(self.action_space.shape)) * self.action_chunk  # an edit changes a whole chunk
        if self.target_entropy == "auto":
            self.target_entropy = -action_dim / 2 + action_dim * math.log(self.edit_scale)
        self.target_entropy = float(self.target_entropy)
        if isinstance(self.ent_coef, str) and self.ent_coef.startswith("auto"):
            init_value = float(self.ent_coef.split("_")[1]) if "_" in self.ent_coef else 1.0
            if init_value <= 0:
                raise ValueError(f"The initial value of ent_coef must be > 0, got {self.ent_coef}")
            self.log_ent_coef = th.full((1,), math.log(init_value), device=self.device, requires_grad=True)
            self.ent_coef_optimizer = th.optim.Adam([self.log_ent_coef], lr=self.lr_schedule(1), fused=True)
        else:
            self.ent_coef_tensor = th.tensor(float(self.ent_coef), device=self.device)

    # ---------------------------------------------------------------------------- training (docs/algorithm.md)

    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        """One UTD block: ``gradient_steps`` critic updates, and a policy update every ``policy_delay``-th of them."""
        data = self.replay_buffer.sample(gradient_steps * batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
        self._train_on(data, gradient_steps, batch_size)

    def _train_on(self, data: ReplayBufferSamples, gradient_steps: int, batch_size: int, log_prefix: str = "train") -> None:
        """
        :meth:`train` on ``gradient_steps`` minibatches drawn in one sample (online, or offline in pretraining), its
        metrics recorded as ``<log_prefix>/<name>``: pretraining's go to ``pretrain/*``, on their own step axis.
        """
        self.policy.set_training_mode(True)
        learning_rates = self._update_learning_rates()
        all_batches = Minibatch.from_samples(self.policy, data, self.gamma)
        metrics = TrainMetrics()
        step = 0
        while step < gradient_steps:
            # A stretch: the critic steps up to the next policy update (policy_delay of them, fewer at a block's ends)
            n_steps = min(self.policy_delay - self._n_updates % self.policy_delay, gradient_steps - step)
            stretch = all_batches.rows(step * batch_size, (step + n_steps) * batch_size)
            policy_update = (self._n_updates + n_steps) % self.policy_delay == 0
            imitation = self._imitation_rows(batch_size, metrics) if policy_update else None
            for step_metrics in self.steps.stretch(stretch, n_steps, policy_update, imitation):
                metrics.add(step_metrics)
            self._n_updates += n_steps
            self._n_base_updates += int(policy_update)
            self._n_policy_updates += int(policy_update)
            step += n_steps
        self._log_metrics(metrics, learning_rates, log_prefix)

    def _stretch(
        self,
        stretch: Minibatch,
        n_steps: int,
        policy_update: bool,
        imitation: tuple[th.Tensor, th.Tensor] | None = None,
        steps: UpdateSteps | None = None,
    ) -> list[dict[str, th.Tensor]]:
        """
        ``n_steps`` critic steps on consecutive minibatches of ``stretch``, then the policy update if ``policy_update``
        (the base imitating ``imitation``'s features and actions, or the last minibatch's when it is ``None``).

        The OTF candidates of all the critic steps are sampled in one batched pass: the base and the edit actor do not
        change between policy updates, so this is exact. ``steps``: what runs each piece, by default :attr:`steps`
        (:mod:`sb3_expo.acceleration`); a graph of the whole stretch traces the plain ones.
        """
        steps = self.steps if steps is None else steps
        batch_size = stretch.rewards.shape[0] // n_steps
        batches = stretch.split(batch_size)
        candidates = self._target_candidates(stretch.next_obs, steps).unflatten(0, (n_steps, batch_size))
        selection_subsets = random_subsets(self.n_critics, self.critic_subset_size, n_steps, self.device)
        value_subsets = random_subsets(self.n_critics, self.critic_subset_size, n_steps, self.device)
        # 1 critic: regress every critic on the TD target at s' (the OTF choice), then Polyak
        inputs = zip(batches, candidates, selection_subsets, value_subsets, strict=True)
        metrics = [steps.critic_step(*step) for step in inputs]
        if policy_update:  # 2-4 base, edit actor, temperature, on the last minibatch
            imitation_obs, imitation_actions = imitation if imitation is not None else (batches[-1].obs, batches[-1].actions)
            metrics.append(steps.policy_step(batches[-1].obs, batches[-1].actions, imitation_obs, imitation_actions))
        return metrics

    def _target_candidates(self, next_obs: th.Tensor, steps: UpdateSteps) -> th.Tensor:
        """OTF candidates at s' with the *online* base weights, edits sampled, dropout off (docs/algorithm.md)."""
        if self.policy.uses_dropout:
            self.policy.set_training_mode(False)
        with th.no_grad():
            candidates = steps.candidates(next_obs, self.base)
        if self.policy.uses_dropout:
            self.policy.set_training_mode(True)
        return candidates

    def _critic_step(
        self, batch: Minibatch, candidates: th.Tensor, selection_subset: th.Tensor, value_subset: th.Tensor
    ) -> dict[str, th.Tensor]:
        """One Adam step of every critic on the same TD target, then the Polyak update of the target critics."""
        with th.no_grad():
            target, best = td_target(
                self.critic_target, batch.next_obs, candidates, batch.rewards, batch.not_terminal, batch.discounts,
                selection_subset, value_subset,
            )  # fmt: skip
        loss, q_values = critic_loss(self.critic, batch.obs, batch.actions, target)
        guarded_step(self.critic.optimizer, loss, "critic_loss", self._n_updates)
        polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
        q_values, edit_won = q_values.detach(), (best >= self.n_base_samples).float()
        return dict(critic_loss=loss.detach(), edit_win_rate=edit_won.mean(), q_ensemble_std=q_values.std(dim=0).mean(),
                    q_mean=q_values.mean())  # fmt: skip

    def _policy_step(
        self, obs: th.Tensor, actions: th.Tensor, imitation_obs: th.Tensor, imitation_actions: th.Tensor
    ) -> dict[str, th.Tensor]:
        """The policy update after every ``policy_delay``-th critic step: steps 2 to 4 (the base on its imitation rows)."""
        # 2 base: imitate the buffer actions (DDPM loss), then its EMA
        metrics = self._base_step(imitation_obs, imitation_actions)
        # 3 edit actor: edit the buffer actions to raise Q, with an entropy bonus
        edit_metrics = self._edit_actor_step(obs, actions)
        # 4 temperature: move α so that the edits' entropy approaches its target
        return {**metrics, **edit_metrics, **self._temperature_step(edit_metrics["entropy"])}

    def _base_step(self, obs: th.Tensor, actions: th.Tensor) -> dict[str, th.Tensor]:
        """One imitation step of the base policy (DDPM loss, AdamW), then its EMA: online and in pretraining."""
        loss = self.base.loss(obs, actions)
        guarded_step(self.base.optimizer, loss, "base_loss", self._n_updates)
        polyak_update(self.base.parameters(), self.base_ema.parameters(), self.base_ema_rate)
        return {"base_loss": loss.detach()}

    def _edit_actor_step(self, obs: th.Tensor, actions: th.Tensor) -> dict[str, th.Tensor]:
        """SAC's actor loss on edits of the *buffer* actions: ``α·log π_E - mean_e Q_e(s, a + β·u)``."""
        edits, log_prob = self.edit_actor(obs, actions)
        q_edited = self.critic(obs, actions + edits).mean(dim=0)  # guarded_step computes the edit actor's gradients only
        loss = (self._current_ent_coef() * log_prob - q_edited).mean()
        guarded_step(self.edit_actor.optimizer, loss, "actor_loss", self._n_updates)
        return {"actor_loss": loss.detach(), "edit_size": edits.detach().abs().mean(), "entropy": -log_prob.detach().mean()}

    def _temperature_step(self, entropy: th.Tensor) -> dict[str, th.Tensor]:
        """
        The reference's ``loss = α·(H - H*)`` on log α (SB3's SAC uses ``log α·(H - H*)``, whose step lacks the
        factor α), then log α is clamped so that α can never overflow (docs/algorithm.md, departure 1).
        """
        if self.ent_coef_optimizer is None or self.log_ent_coef is None:
            return {}  # a fixed α
        loss = (self.log_ent_coef.exp() * (entropy - self.target_entropy)).sum()
        guarded_step(self.ent_coef_optimizer, loss, "ent_coef_loss", self._n_updates)
        with th.no_grad():
            self.log_ent_coef.clamp_(LOG_ENT_COEF_MIN, LOG_ENT_COEF_MAX)
        return {"ent_coef_loss": loss.detach()}

    def _store_transition(self, replay_buffer: ReplayBuffer, *transition: Any) -> None:
        """SB3's, and an env whose episode ended starts it with a new chunk (``action_chunk``: sb3_expo.open_loop)."""
        super()._store_transition(replay_buffer, *transition)
        self.policy.end_chunks(transition[3])  # (buffer_action, new_obs, reward, dones, infos)

    def _current_ent_coef(self) -> th.Tensor:
        return self.log_ent_coef.detach().exp() if self.log_ent_coef is not None else self.ent_coef_tensor

    def _update_learning_rates(self) -> dict[str, float]:
        """
        SB3's schedule for every optimiser; the base and the edit actor also decay with a cosine over their updates.

        :return: the learning rates set, by their log names
        """
        learning_rate = self.lr_schedule(self._current_progress_remaining)
        for optimizer in [self.critic.optimizer] + ([self.ent_coef_optimizer] if self.ent_coef_optimizer else []):
            set_learning_rate(optimizer, learning_rate)
        base_learning_rate = learning_rate * cosine_decay(self._n_base_updates, self.policy_lr_decay_steps)
        edit_learning_rate = learning_rate * cosine_decay(self._n_policy_updates, self.policy_lr_decay_steps)
        set_learning_rate(self.base.optimizer, base_learning_rate)
        set_learning_rate(self.edit_actor.optimizer, edit_learning_rate)
        return dict(learning_rate=learning_rate, base_learning_rate=base_learning_rate, edit_learning_rate=edit_learning_rate)

    def _log_metrics(self, metrics: TrainMetrics, learning_rates: dict[str, float], prefix: str) -> None:
        """Read all metrics of the block with one device-to-host copy; stop with a clear error on NaN/inf."""
        logged = metrics.read(ent_coef=self._current_ent_coef())
        check_finite_losses(logged, self._n_updates, prefix)
        self.logger.record(f"{prefix}/n_updates", self._n_updates, exclude="tensorboard")
        for name, value in {**learning_rates, **logged}.items():
            self.logger.record(f"{prefix}/{name}", value)
