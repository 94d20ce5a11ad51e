"""EXPO: Expressive Policy Optimization (Dong, Li, Sadigh, Finn, 2025), as an SB3 off-policy algorithm."""

import io
import math
import pathlib
import warnings
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import configure_logger, polyak_update, update_learning_rate

from sb3_expo.buffers import DictOfflineReplayBuffer, OfflineMixingMixin, OfflineReplayBuffer
from sb3_expo.checkpoints import write_atomically
from sb3_expo.critics import random_subsets
from sb3_expo.data import OfflineSource, OfflineTransitions, RewardTransform, load_offline_dataset
from sb3_expo.policies import ExpoPolicy, MlpPolicy, MultiInputPolicy

SelfEXPO = TypeVar("SelfEXPO", bound="EXPO")

# RLPD's symmetric sampling: half of every minibatch offline.
DEFAULT_OFFLINE_RATIO = 0.5
# log α is clamped to this range after every temperature step, so α (and every loss it scales) stays finite.
LOG_ENT_COEF_MIN, LOG_ENT_COEF_MAX = -20.0, 20.0


def td_target(
    score: Callable[[th.Tensor, th.Tensor], th.Tensor],
    candidates: th.Tensor,
    rewards: th.Tensor,
    not_terminal: th.Tensor,
    gamma: float,
    selection_subset: th.Tensor,
    value_subset: th.Tensor,
) -> tuple[th.Tensor, th.Tensor]:
    """
    EXPO's TD target (ALGORITHM.md §4.1): pick the next action a* among the OTF candidates by the
    minimum over one random subset of target critics, then bootstrap from the minimum over an
    *independent* subset at a*. There is no entropy term in the backup.

    Only the critics these minima use are evaluated: the selection subset on every candidate, the value
    subset on a* alone. With the paper's 10 critics, subsets of 2 and 16 candidates that is 34 critic
    evaluations per state instead of 160.

    :param score: ``score(actions, members)``: the values ``(k, B, C)`` of target critics ``members`` (``k``
        indices) for actions ``(B, C, action_dim)`` at the next states
    :param candidates: the OTF candidates at s', ``(B, C, action_dim)``
    :param rewards: ``(B,)``
    :param not_terminal: ``1 - terminated``, ``(B,)`` (truncation is not termination)
    :param gamma: discount factor
    :param selection_subset: critic indices that rank candidates
    :param value_subset: critic indices that value a*
    :return: the targets ``(B,)`` and the index of a* among the candidates ``(B,)``
    """
    best = score(candidates, selection_subset).min(dim=0).values.argmax(dim=1)
    best_action = candidates.gather(1, best.view(-1, 1, 1).expand(-1, 1, candidates.shape[-1]))
    q_best = score(best_action, value_subset).squeeze(-1).min(dim=0).values
    return rewards + gamma * not_terminal * q_best, best


def cosine_decay(step: int, decay_steps: int | None) -> float:
    """Factor of the cosine learning-rate decay from 1 to 0 over ``decay_steps`` (1 when ``decay_steps`` is None)."""
    if decay_steps is None:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step, decay_steps) / decay_steps))


class EXPO(OffPolicyAlgorithm):
    """
    Expressive Policy Optimization (EXPO): online RL with an expressive diffusion policy, without
    back-propagating Q through the denoising chain. Paper: https://arxiv.org/abs/2507.07986

    Three learners share one replay buffer. A diffusion *base* policy imitates the buffer's actions; an
    *edit* actor learns small Q-improving changes ``β·u`` of base actions; an ensemble of LayerNorm
    critics is trained by TD on the *on-the-fly* (OTF) action: ``N`` base samples plus ``K`` edited
    ones, the one with the highest Q wins. That same OTF choice is the action executed in the env.

    Every argument defaults to the paper's setting (ALGORITHM.md §6). The paper's ``UTD=20`` is
    ``gradient_steps=20`` critic updates per env step with one base/edit/temperature update per
    ``policy_delay=20`` critic updates. At those settings an env step costs ~1.4 TFLOP, mostly
    diffusion sampling for the TD targets: use a GPU, or reduce ``gradient_steps``, ``policy_delay``
    and network sizes on CPU.

    :param policy: the policy model to use ("MlpPolicy" for Box, "MultiInputPolicy" for Dict observations)
    :param env: the environment to learn from (if registered in Gymnasium, can be str)
    :param learning_rate: learning rate of every optimiser (the paper: 3e-4); can be a function of the
        remaining progress (1 to 0). The base and edit-actor rates are further multiplied by a cosine
        decay over ``policy_lr_decay_steps`` policy updates.
    :param buffer_size: size of the replay buffer
    :param learning_starts: env steps of uniform random actions before learning starts (the paper:
        5000 from scratch, 0 after pretraining)
    :param batch_size: minibatch size of each critic update (and of the policy update)
    :param tau: Polyak rate of the target critics, applied after every critic update
    :param gamma: discount factor
    :param train_freq: update the model every ``train_freq`` steps, or a tuple like ``(5, "step")``
    :param gradient_steps: critic updates per ``train()`` call (the paper's UTD ratio, 20)
    :param policy_delay: critic updates per base / edit-actor / temperature update (the paper: 20, so
        one policy update per env step at UTD 20). The policy update uses the last minibatch before it.
    :param action_noise: optional extra action noise (not used by the paper)
    :param replay_buffer_class: replay buffer class; by default SB3's ``ReplayBuffer`` / ``DictReplayBuffer``, or
        ``OfflineReplayBuffer`` / ``DictOfflineReplayBuffer`` when ``offline_dataset`` or a reward transform is set
    :param replay_buffer_kwargs: keyword arguments of the replay buffer
    :param optimize_memory_usage: SB3's memory-efficient replay buffer variant
    :param offline_dataset: offline data mixed into every batch (ALGORITHM.md §4-5): a Minari dataset id
        (e.g. ``"D4RL/antmaze/large-diverse-v1"``), the path of a D4RL or robomimic ``.hdf5`` file, or
        loaded :class:`~sb3_expo.data.OfflineTransitions`. Only an id or path is saved with the model, and
        the data is reloaded from it by ``EXPO.load`` (pass ``offline_dataset=...`` to ``load`` if it moved);
        in-memory transitions are never saved: call :meth:`attach_offline_data` again after loading.
    :param offline_dataset_kwargs: keyword arguments of the loader: ``download=True`` (Minari) or
        ``obs_keys=[...]`` (robomimic)
    :param offline_ratio: share of offline transitions in every minibatch once the online buffer holds
        data (the paper: 0.5, RLPD's symmetric sampling); batches are all offline while it is empty
    :param reward_scale: every sampled reward, offline and online, becomes ``r * reward_scale + reward_shift``
    :param reward_shift: see ``reward_scale`` (the paper's AntMaze setting: -1)
    :param n_critics: size E of the critic ensemble (the paper: 10)
    :param critic_subset_size: the minimum over a random subset of this many target critics scores
        OTF candidates and values TD targets (the paper's ``num_min_qs``: 2, or 1 on AntMaze)
    :param n_base_samples: N, base-policy samples per state in the OTF action (the paper: 8)
    :param n_edit_samples: K ≤ N, how many base samples are also edited (the paper: 8)
    :param edit_scale: β, the largest change the edit actor makes to an action coordinate, in the
        policy's [-1, 1] action units. The paper's guidance: small (0.05-0.1) when good offline data
        makes the base policy strong, so edits only refine it; large (0.5-0.7) where exploration
        matters (sparse rewards, learning from scratch). The default 0.7 is for online learning
        without offline data; measured on Pendulum-v1 in ``benchmarks/README.md``.
    :param diffusion_steps: T, denoising steps of the base policy (the paper: 10)
    :param base_ema_rate: Polyak rate of the EMA base policy used for acting, per base update (the paper: 0.001)
    :param policy_lr_decay_steps: the base and edit-actor learning rates decay to 0 with a cosine over this
        many policy updates (the paper: 3e6); ``None`` keeps them constant. Critic and temperature rates
        follow ``learning_rate`` only.
    :param ent_coef: temperature α of the edit actor: "auto" to learn it (initial value 1), "auto_0.1"
        to learn it from 0.1, or a float to fix it. Learned log α is clamped to
        [-20, 20] so it can never overflow.
    :param target_entropy: target entropy of the edit ``β·u`` when learning α. "auto" uses
        ``-d/2 + d·log β``: the reference's ``-d/2`` measured on ``u`` before scaling. The reference
        code's literal target ``-d/2`` (on ``β·u``) is unreachable for β < 0.3, so there α only grows
        (here: to the clamp); pass ``target_entropy=-d/2`` to reproduce it.
    :param compile_mode: ``None`` runs eagerly. A ``torch.compile`` mode (``"default"``, ``"max-autotune"``,
        ``"max-autotune-no-cudagraphs"``, or ``"reduce-overhead"`` for CUDA graphs) compiles the hot paths:
        the diffusion sampler (all T steps as one graph), the target critics' scoring of candidates with
        the TD target, and the critic loss with its backward. Same mathematics and, up to floating-point
        reassociation, the same numbers as eager (``tests/test_speed_paths.py``). Compiling takes tens
        of seconds at the first ``learn()`` / ``predict()`` call and again for every new batch shape.
        Meant for a GPU at the paper's settings; on a CPU it was at parity at small sizes
        (``benchmarks/README.md``; ``benchmarks/speed.py`` measures it on your device).
    :param mixed_precision: run the denoiser in bfloat16 autocast while sampling candidates (the bulk of
        EXPO's compute, ALGORITHM.md §8). For hardware with fast bf16 matmuls: GPUs (A100, H100; not yet
        measured) and CPUs with AVX-512 BF16 or AMX, where it made the paper-size update 1.36-1.44x faster.
        Sampled actions differ from float32 by about 0.03; on the PointMaze demo task three seeds learned
        as in float32 (``benchmarks/README.md``). Training losses and the critics stay in float32.
    :param stats_window_size: window size of the rollout logging (episodes)
    :param tensorboard_log: the log location for TensorBoard (if None, no logging)
    :param policy_kwargs: extra arguments of :class:`~sb3_expo.policies.ExpoPolicy`: ``net_arch``
        (critic and edit-actor layers), ``denoiser_width``, ``denoiser_blocks``, ``denoiser_dropout``,
        ``edit_dropout``, ... The EXPO arguments above (``n_critics``, ``edit_scale``, ...) override
        the same keys given here.
    :param verbose: 0 no output, 1 info, 2 debug
    :param seed: seed of the pseudo-random generators
    :param device: "cpu", "cuda", or "auto" (CUDA when available)
    :param _init_setup_model: whether to build the networks at creation
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: ExpoPolicy

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
        n_critics: int = 10,
        critic_subset_size: int = 2,
        n_base_samples: int = 8,
        n_edit_samples: int = 8,
        edit_scale: float = 0.7,
        diffusion_steps: int = 10,
        base_ema_rate: float = 0.001,
        policy_lr_decay_steps: int | None = 3_000_000,
        ent_coef: str | float = "auto",
        target_entropy: str | float = "auto",
        compile_mode: str | None = None,
        mixed_precision: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Box,),
            support_multi_env=True,
        )
        self.policy_delay = policy_delay
        self.offline_dataset = offline_dataset
        self.offline_dataset_kwargs = offline_dataset_kwargs or {}
        self.offline_ratio = offline_ratio
        self.reward_scale = reward_scale
        self.reward_shift = reward_shift
        self.n_critics = n_critics
        self.critic_subset_size = critic_subset_size
        self.n_base_samples = n_base_samples
        self.n_edit_samples = n_edit_samples
        self.edit_scale = edit_scale
        self.diffusion_steps = diffusion_steps
        self.base_ema_rate = base_ema_rate
        self.policy_lr_decay_steps = policy_lr_decay_steps
        self.ent_coef = ent_coef
        self.target_entropy = target_entropy
        self.compile_mode = compile_mode
        self.mixed_precision = mixed_precision
        self.log_ent_coef: th.Tensor | None = None
        self.ent_coef_optimizer: th.optim.Adam | None = None
        self._n_policy_updates = 0
        self._n_base_updates = 0
        # The loaded offline transitions: kept to re-attach after load_replay_buffer, never saved.
        self._offline_transitions: OfflineTransitions | None = None
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
        self._check_arguments()
        self._pass_options_to_policy()
        self._choose_replay_buffer()
        super()._setup_model()
        self._create_aliases()
        self._compile_hot_paths()
        if self.offline_dataset is not None:
            self.attach_offline_data(self.offline_dataset)

        action_dim = int(np.prod(self.action_space.shape))
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

    def _compile_hot_paths(self) -> None:
        """Bind the eager or ``torch.compile``-d versions of the sampler, the TD target and the critic loss."""
        self._td_targets_fn, self._critic_loss_fn = self._td_targets, self._critic_loss
        if self.compile_mode is None:
            return
        # Static shapes: the batch shapes of training and acting are fixed, each compiles once.
        compile_kwargs = dict(mode=self.compile_mode, dynamic=False)
        self.policy.compile_samplers(**compile_kwargs)
        self._td_targets_fn = th.compile(self._td_targets, **compile_kwargs)
        self._critic_loss_fn = th.compile(self._critic_loss, **compile_kwargs)

    def _check_arguments(self) -> None:
        if self.policy_delay < 1:
            raise ValueError(f"policy_delay must be >= 1, got {self.policy_delay}")
        if not 0 < self.base_ema_rate <= 1:
            raise ValueError(f"base_ema_rate must be in (0, 1], got {self.base_ema_rate}")
        if self.gradient_steps == 0 or self.gradient_steps < -1:
            raise ValueError(
                f"gradient_steps must be >= 1 (critic updates per train() call, the paper's UTD ratio: 20) or -1 "
                f"(as many as env steps were collected), got {self.gradient_steps}: with 0 EXPO would never train"
            )
        if self.diffusion_steps < 1:
            raise ValueError(f"diffusion_steps (T) must be >= 1, got {self.diffusion_steps} (the paper: 10)")
        if self.edit_scale > 1:
            warnings.warn(
                f"edit_scale (β) = {self.edit_scale} > 1: an edit can move an action by more than half the width of the "
                "action space (actions are in [-1, 1]), so edited candidates are mostly clipped to the bounds. The paper "
                "uses 0.05-0.7.",
                stacklevel=3,
            )
        # SB3 checks that actions are a Box with finite bounds; ExpoPolicy checks n_critics, critic_subset_size,
        # n_base_samples, n_edit_samples and edit_scale.

    def _pass_options_to_policy(self) -> None:
        """
        EXPO's policy options go to :class:`ExpoPolicy`; the same key in ``policy_kwargs`` with another value
        is an error rather than silently overridden.
        """
        options = dict(
            n_critics=self.n_critics,
            critic_subset_size=self.critic_subset_size,
            n_base_samples=self.n_base_samples,
            n_edit_samples=self.n_edit_samples,
            edit_scale=self.edit_scale,
            diffusion_steps=self.diffusion_steps,
            mixed_precision=self.mixed_precision,
        )
        given = self.policy_kwargs
        conflicts = [f"policy_kwargs {key}={given[key]!r} vs EXPO {key}={value!r}" for key, value in options.items()
                     if key in given and given[key] != value]  # fmt: skip
        if conflicts:
            raise ValueError(f"Options given twice with different values ({', '.join(conflicts)}): pass them to EXPO only")
        self.policy_kwargs.update(options)

    def _choose_replay_buffer(self) -> None:
        """
        The offline-mixing buffer whenever there is offline data or a reward transform. A buffer class
        given by the user gets ``offline_ratio`` and the reward transform too if it can mix (unless its
        ``replay_buffer_kwargs`` set them and EXPO's are the defaults); one that cannot (SB3's
        ``ReplayBuffer``, ``HerReplayBuffer``) would silently drop the transform, so that is an error.
        """
        reward_transform = RewardTransform(self.reward_scale, self.reward_shift)
        needs_mixing = self.offline_dataset is not None or not reward_transform.is_identity
        if self.replay_buffer_class is None:
            if not needs_mixing:
                return
            is_dict = isinstance(self.observation_space, spaces.Dict)
            self.replay_buffer_class = DictOfflineReplayBuffer if is_dict else OfflineReplayBuffer
        if issubclass(self.replay_buffer_class, OfflineMixingMixin):
            # EXPO's value, unless replay_buffer_kwargs sets it and EXPO's is the default; both set differently: error.
            for key, value, default in [
                ("offline_ratio", self.offline_ratio, DEFAULT_OFFLINE_RATIO),
                ("reward_transform", reward_transform, RewardTransform()),
            ]:
                given = self.replay_buffer_kwargs.setdefault(key, value)
                if given != value and value != default:
                    raise ValueError(
                        f"replay_buffer_kwargs {key}={given!r} disagrees with EXPO's {key} ({value!r}): set it once"
                    )
        elif not reward_transform.is_identity:
            raise ValueError(
                f"reward_scale={self.reward_scale} / reward_shift={self.reward_shift} need a buffer that transforms "
                f"sampled rewards, and {self.replay_buffer_class.__name__} does not: leave replay_buffer_class unset "
                "(EXPO then picks OfflineReplayBuffer / DictOfflineReplayBuffer) or pass one of those."
            )

    def _create_aliases(self) -> None:
        self.base = self.policy.base
        self.base_ema = self.policy.base_ema
        self.edit_actor = self.policy.edit_actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target

    # ---------------------------------------------------------------------------- training (ALGORITHM.md §4)

    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        """
        One UTD block: ``gradient_steps`` critic updates, and a base / edit-actor / temperature update
        after every ``policy_delay``-th critic update (counted across calls).

        All minibatches are drawn in one replay-buffer sample. The OTF candidates of the TD targets are
        drawn in one batched pass per stretch of critic updates between two policy updates (the base
        and edit actor do not change within it, so this is exact); only the ranking of candidates, which
        depends on the target critics, runs inside the loop. Metrics stay on the device until the end.
        """
        data = self.replay_buffer.sample(gradient_steps * batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
        self._train_on(data, gradient_steps, batch_size)

    def _train_on(self, data: Any, gradient_steps: int, batch_size: int) -> None:
        """:meth:`train` on ``gradient_steps`` minibatches already drawn (online training, or offline critic warm-up)."""
        self.policy.set_training_mode(True)
        self._update_learning_rates()
        obs = self.policy.extract_features(data.observations, self.policy.features_extractor)
        next_obs = self.policy.extract_features(data.next_observations, self.policy.features_extractor)
        actions, rewards, not_terminal = data.actions, data.rewards.flatten(), 1.0 - data.dones.flatten()

        metrics: dict[str, list[th.Tensor]] = {"critic_loss": [], "edit_win_rate": [], "q_ensemble_std": [], "q_mean": []}
        step = 0
        while step < gradient_steps:
            # The stretch of critic updates that ends at the next policy update (or at the end of this call).
            steps_to_policy_update = self.policy_delay - (self._n_updates + step) % self.policy_delay
            n_steps = min(steps_to_policy_update, gradient_steps - step)
            block = slice(step * batch_size, (step + n_steps) * batch_size)
            candidates = self._target_candidates(next_obs[block]).view(n_steps, batch_size, -1, actions.shape[-1])
            selection_subsets = random_subsets(self.n_critics, self.critic_subset_size, n_steps, self.device)
            value_subsets = random_subsets(self.n_critics, self.critic_subset_size, n_steps, self.device)

            for j in range(n_steps):
                batch = slice((step + j) * batch_size, (step + j + 1) * batch_size)
                with th.no_grad():
                    target, best = self._td_targets_fn(
                        next_obs[batch],
                        candidates[j],
                        rewards[batch],
                        not_terminal[batch],
                        selection_subsets[j],
                        value_subsets[j],
                    )
                metrics["edit_win_rate"].append((best >= self.n_base_samples).float().mean())
                q_values = self._critic_step(obs[batch], actions[batch], target, metrics)
                metrics["q_ensemble_std"].append(q_values.detach().std(dim=0).mean())
                metrics["q_mean"].append(q_values.detach().mean())

            step += n_steps
            if n_steps == steps_to_policy_update:
                self._policy_step(obs[batch], actions[batch], metrics)

        self._n_updates += gradient_steps
        self._log_metrics(metrics)

    def _target_candidates(self, next_obs: th.Tensor) -> th.Tensor:
        """OTF candidates at s' with the *online* base weights, edits sampled, dropout off (ALGORITHM.md §3)."""
        self.policy.set_training_mode(False)
        with th.no_grad():
            candidates = self.policy.propose_candidates(next_obs, self.base)
        self.policy.set_training_mode(True)
        return candidates

    def _td_targets(
        self,
        next_obs: th.Tensor,
        candidates: th.Tensor,
        rewards: th.Tensor,
        not_terminal: th.Tensor,
        selection_subset: th.Tensor,
        value_subset: th.Tensor,
    ) -> tuple[th.Tensor, th.Tensor]:
        """:func:`td_target` with the target critics at s'."""

        def score(actions: th.Tensor, members: th.Tensor) -> th.Tensor:
            return self.policy.score_candidates(next_obs, actions, members)

        return td_target(score, candidates, rewards, not_terminal, self.gamma, selection_subset, value_subset)

    def _critic_loss(self, obs: th.Tensor, actions: th.Tensor, target: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Mean squared TD error of every critic against the same target; also returns the Q-values ``(E, B)``."""
        q_values = self.critic(obs, actions)
        return ((q_values - target) ** 2).mean(), q_values

    def _critic_step(self, obs: th.Tensor, actions: th.Tensor, target: th.Tensor, metrics: dict) -> th.Tensor:
        """Regress every critic on the same target, one Adam step, then Polyak-update the target critics."""
        critic_loss, q_values = self._critic_loss_fn(obs, actions, target)
        self.critic.optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic.optimizer.step()
        polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
        # A copy: under CUDA graphs (compile_mode "reduce-overhead"/"max-autotune") the loss lives in the graph's
        # static memory, which the next critic step's replay overwrites before the metrics are read.
        metrics["critic_loss"].append(critic_loss.detach().clone())
        return q_values

    def _policy_step(self, obs: th.Tensor, actions: th.Tensor, metrics: dict) -> None:
        """Base (DDPM on buffer actions + EMA), edit actor, then temperature: ALGORITHM.md §4.2-4.4."""
        base_loss = self._base_step(obs, actions)

        # The edit actor edits the buffer action of each state, not a fresh diffusion sample.
        ent_coef = self.log_ent_coef.detach().exp() if self.log_ent_coef is not None else self.ent_coef_tensor
        edits, log_prob = self.edit_actor(obs, actions)
        self.critic.requires_grad_(False)  # the actor loss must not accumulate critic gradients
        q_edited = self.critic(obs, actions + edits).mean(dim=0)
        self.critic.requires_grad_(True)
        actor_loss = (ent_coef * log_prob - q_edited).mean()
        self.edit_actor.optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.edit_actor.optimizer.step()

        self._update_temperature(log_prob.detach())
        self._n_policy_updates += 1
        for name, value in [
            ("base_loss", base_loss),
            ("actor_loss", actor_loss),
            ("edit_size", edits.abs().mean()),
            ("entropy", -log_prob.mean()),
        ]:
            metrics.setdefault(name, []).append(value.detach())

    def _base_step(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """One imitation step of the base policy (DDPM loss, AdamW), then its EMA: online and in pretraining."""
        base_loss = self.base.loss(obs, actions)
        self.base.optimizer.zero_grad(set_to_none=True)
        base_loss.backward()
        self.base.optimizer.step()
        polyak_update(self.base.parameters(), self.base_ema.parameters(), self.base_ema_rate)
        self._n_base_updates += 1
        return base_loss.detach()

    def _update_temperature(self, log_prob: th.Tensor) -> None:
        """
        The reference's temperature step, ``loss = α · (H - H*)`` with ``H = -mean log π_E``, on the
        parameter log α. (SB3's SAC uses ``log α · (H - H*)``: the same sign of step, but its gradient
        lacks the factor α, so α moves as fast when it is 1e-3 as when it is 1.) Then log α is clamped
        to a finite range: with an unreachable target α would otherwise grow until it overflows to inf
        and the losses to NaN (ALGORITHM.md §7.1).
        """
        if self.ent_coef_optimizer is None or self.log_ent_coef is None:
            return
        entropy = -log_prob.mean()
        ent_coef_loss = (self.log_ent_coef.exp() * (entropy - self.target_entropy)).sum()
        self.ent_coef_optimizer.zero_grad(set_to_none=True)
        ent_coef_loss.backward()
        self.ent_coef_optimizer.step()
        with th.no_grad():
            self.log_ent_coef.clamp_(LOG_ENT_COEF_MIN, LOG_ENT_COEF_MAX)

    def _update_learning_rates(self) -> None:
        """
        SB3's schedule for every optimiser; the base and the edit actor also decay with a cosine over
        their own updates (the base's include pretraining steps).
        """
        learning_rate = self.lr_schedule(self._current_progress_remaining)
        for optimizer in [self.critic.optimizer] + ([self.ent_coef_optimizer] if self.ent_coef_optimizer else []):
            update_learning_rate(optimizer, learning_rate)
        base_learning_rate = learning_rate * cosine_decay(self._n_base_updates, self.policy_lr_decay_steps)
        edit_learning_rate = learning_rate * cosine_decay(self._n_policy_updates, self.policy_lr_decay_steps)
        update_learning_rate(self.base.optimizer, base_learning_rate)
        update_learning_rate(self.edit_actor.optimizer, edit_learning_rate)
        self.logger.record("train/learning_rate", learning_rate)
        self.logger.record("train/base_learning_rate", base_learning_rate)
        self.logger.record("train/edit_learning_rate", edit_learning_rate)

    def _log_metrics(self, metrics: dict[str, list[th.Tensor]]) -> None:
        """Read all metrics of the call with one device-to-host copy; stop with a clear error on NaN/inf."""
        ent_coef = self.log_ent_coef.detach().exp() if self.log_ent_coef is not None else self.ent_coef_tensor
        names = [*metrics, "ent_coef"]
        values = th.stack([*(th.stack(metrics[name]).mean() for name in metrics), ent_coef.reshape(())]).cpu().tolist()
        logged = dict(zip(names, values, strict=True))
        for name in ("critic_loss", "base_loss", "actor_loss"):
            if name in logged and not math.isfinite(logged[name]):
                raise FloatingPointError(
                    f"EXPO: train/{name} became {logged[name]} after {self._n_updates} critic updates. The usual causes "
                    "are NaN/inf rewards or observations in the replay buffer, or unnormalised inputs of huge magnitude "
                    "(try VecNormalize or a smaller learning_rate). The replay buffer is intact "
                    "(save_replay_buffer still works); reload the last checkpoint to continue."
                )
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for name, value in logged.items():
            self.logger.record(f"train/{name}", value)

    # ----------------------------------------------------------------------- offline data (ALGORITHM.md §5)

    def attach_offline_data(self, dataset: OfflineSource | None = None) -> None:
        """
        Load offline data and mix it into every replay-buffer sample (``offline_ratio``).

        :param dataset: a Minari id, an HDF5 path or :class:`~sb3_expo.data.OfflineTransitions`;
            by default the model's ``offline_dataset``. Replaces any data attached before.
        :raises ValueError: the data does not match the env's spaces, or the replay buffer cannot mix
            (a custom ``replay_buffer_class`` that is not an offline buffer)
        """
        dataset = self.offline_dataset if dataset is None else dataset
        if dataset is None:
            raise ValueError("No offline dataset given: pass offline_dataset=... to EXPO or a dataset to this method")
        if not isinstance(self.replay_buffer, OfflineMixingMixin):
            raise ValueError(
                f"The replay buffer {type(self.replay_buffer).__name__} cannot mix offline data: leave replay_buffer_class "
                "unset (EXPO then picks OfflineReplayBuffer / DictOfflineReplayBuffer) or pass one of those."
            )
        try:
            transitions = load_offline_dataset(dataset, **self.offline_dataset_kwargs)
        except FileNotFoundError as error:
            raise type(error)(
                f"{error}\nLoading a saved model whose dataset moved or is missing: EXPO.load(path, offline_dataset=<its new "
                "path or id>) to continue training, or EXPO.load(path, offline_dataset=None) to act without it."
            ) from error
        self.replay_buffer.attach_offline(transitions)
        self._offline_transitions = transitions
        self.offline_dataset = dataset

    def pretrain(
        self: SelfEXPO,
        n_steps: int,
        batch_size: int | None = None,
        log_interval: int = 1000,
        tb_log_name: str = "EXPO",
        progress_bar: bool = False,
        critic: bool = False,
    ) -> SelfEXPO:
        """
        Offline-to-online: pretrain the base policy (and its EMA) by imitation of the offline data only
        (the paper: 500k steps on AntMaze and threading, 200k on square). The critics, the edit actor and
        the temperature start fresh in :meth:`learn`, which then needs no random warm-up
        (``learning_starts=0``).

        With ``critic=True`` the critics, the edit actor and the temperature are trained too, on offline
        batches only (the reference code's ``pretrain_q`` / ``pretrain_edit`` options): each step is then
        one UTD block of :meth:`train` (``gradient_steps`` critic updates, and the base, edit and temperature
        updates every ``policy_delay``). Use it after imitation (``pretrain(n)`` then ``pretrain(m,
        critic=True)``) so that the on-the-fly action is ranked by fitted critics from the first online
        step: untrained critics pick among the base's samples by noise that is the same for every state,
        which can act far worse than the base alone (``benchmarks/README.md``).

        TensorBoard: ``pretrain/base_loss`` every ``log_interval`` steps, in the same run as the following
        ``learn()`` calls; with ``critic=True`` also the ``train/*`` keys of :meth:`train`.

        :param n_steps: gradient steps (with ``critic=True``: UTD blocks of ``gradient_steps`` critic updates)
        :param batch_size: minibatch size (default: the model's ``batch_size``)
        :param log_interval: steps between two log records
        :param tb_log_name: name of the TensorBoard run
        :param progress_bar: show a tqdm progress bar
        :param critic: also train the critics, the edit actor and the temperature (see above)
        :raises ValueError: no offline data is attached
        """
        if not isinstance(self.replay_buffer, OfflineMixingMixin) or self.replay_buffer.offline_size == 0:
            raise ValueError("pretrain() imitates offline data: pass offline_dataset=... to EXPO first")
        if getattr(self, "_logger", None) is None:
            self.set_logger(configure_logger(self.verbose, self.tensorboard_log, tb_log_name, reset_num_timesteps=True))
        batch_size = batch_size or self.batch_size
        steps = range(n_steps)
        if progress_bar:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="pretraining the critics on offline data" if critic else "pretraining the base policy")
        if critic:
            for step in steps:
                data = self.replay_buffer.sample_offline(self.gradient_steps * batch_size, env=self._vec_normalize_env)
                self._train_on(data, self.gradient_steps, batch_size)
                if (step + 1) % log_interval == 0 or step + 1 == n_steps:
                    self.logger.dump(step=self._n_updates)
            return self
        self.policy.set_training_mode(True)
        losses = []
        for step in steps:
            # The learning rate follows its schedule at every step, as the reference's optax schedule does.
            decay = cosine_decay(self._n_base_updates, self.policy_lr_decay_steps)
            update_learning_rate(self.base.optimizer, self.lr_schedule(self._current_progress_remaining) * decay)
            data = self.replay_buffer.sample_offline(batch_size, env=self._vec_normalize_env)
            obs = self.policy.extract_features(data.observations, self.policy.features_extractor)
            losses.append(self._base_step(obs, data.actions))
            if (step + 1) % log_interval == 0 or step + 1 == n_steps:
                self._log_pretraining(th.stack(losses).mean().item())
                losses = []
        return self

    def _log_pretraining(self, base_loss: float) -> None:
        if not math.isfinite(base_loss):
            raise FloatingPointError(
                f"EXPO: pretrain/base_loss became {base_loss} after {self._n_base_updates} steps: check the offline "
                "data for NaN/inf or huge observations, or lower the learning_rate."
            )
        self.logger.record("pretrain/base_loss", base_loss)
        self.logger.record("pretrain/n_updates", self._n_base_updates)
        self.logger.record("pretrain/learning_rate", self.base.optimizer.param_groups[0]["lr"])
        self.logger.dump(step=self._n_base_updates)

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """
        SB3's, after a check that the env's reward and observation are finite: a NaN stored in the buffer
        would poison every later minibatch, so it is refused before it enters (the model and the buffer stay
        as they were, and can be saved and continued with a fixed env).
        """
        observations = new_obs.values() if isinstance(new_obs, dict) else [new_obs]
        for what, values in [("reward", [reward]), ("observation", observations)]:
            if not all(np.isfinite(value).all() for value in values):
                raise ValueError(
                    f"The env returned a non-finite {what} at env step {self.num_timesteps}. It was not "
                    "stored: the replay buffer and the model are unchanged. Fix the env (or clip/normalise its output) "
                    "and continue with model.set_env(env) and model.learn(..., reset_num_timesteps=False)."
                )
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """
        SB3's ``save``, written to a temporary file and renamed, so an interrupted save never replaces the
        last good model with a broken one (:func:`~sb3_expo.checkpoints.write_atomically`).
        """
        write_atomically(path, "zip", lambda file: super(EXPO, self).save(file, exclude, include))

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """SB3's ``save_replay_buffer`` (offline data excluded), written atomically like :meth:`save`."""
        write_atomically(path, "pkl", lambda file: super(EXPO, self).save_replay_buffer(file))

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """SB3's ``load_replay_buffer``, then the offline data (never saved in the file) is attached again."""
        super().load_replay_buffer(path, truncate_last_traj)
        if self._offline_transitions is not None and isinstance(self.replay_buffer, OfflineMixingMixin):
            self.replay_buffer.attach_offline(self._offline_transitions)

    # --------------------------------------------------------------------------------- SB3 plumbing

    def learn(
        self: SelfEXPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "EXPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfEXPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _excluded_save_params(self) -> list[str]:
        excluded = [*super()._excluded_save_params(), "base", "base_ema", "edit_actor", "critic", "critic_target"]
        excluded.append("_offline_transitions")  # the data is reloaded from `offline_dataset`, never saved
        excluded += ["_td_targets_fn", "_critic_loss_fn"]  # rebound (and recompiled) when the model is rebuilt
        if isinstance(self.offline_dataset, OfflineTransitions):
            excluded.append("offline_dataset")
        return excluded

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "base.optimizer", "edit_actor.optimizer", "critic.optimizer"]
        if self.ent_coef_optimizer is not None:
            return [*state_dicts, "ent_coef_optimizer"], ["log_ent_coef"]
        return state_dicts, ["ent_coef_tensor"]
