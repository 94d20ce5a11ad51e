"""
EXPO's offline-to-online part: the offline dataset mixed into every minibatch, and pretraining on it.

:class:`OfflineToOnline` is a mixin of :class:`~sb3_expo.expo.EXPO` (which defines the update steps it reuses:
``_train_on`` and ``_base_step``). The mixing itself is the replay buffer's job (:mod:`sb3_expo.buffers`).
"""

import io
import math
import pathlib
import warnings
from collections.abc import Iterable
from typing import Any, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import configure_logger

from sb3_expo.buffers import DictOfflineReplayBuffer, OfflineMixingMixin, OfflineReplayBuffer
from sb3_expo.checks import check_finite_base_loss, check_image_observations, check_offline_batch_size, other_env_warning
from sb3_expo.chunks import ChunkReplayBuffer, ChunkSamplingMixin, DictChunkReplayBuffer
from sb3_expo.data import OfflineSource, RewardTransform, load_offline_dataset
from sb3_expo.update import TrainMetrics

SelfOfflineToOnline = TypeVar("SelfOfflineToOnline", bound="OfflineToOnline")

# RLPD's symmetric sampling: half of every minibatch offline.
DEFAULT_OFFLINE_RATIO = 0.5


def choose_replay_buffer_class(
    replay_buffer_class: type[ReplayBuffer] | None,
    replay_buffer_kwargs: dict[str, Any],
    observation_space: spaces.Space,
    has_offline_data: bool,
    offline_ratio: float,
    reward_transform: RewardTransform,
) -> type[ReplayBuffer] | None:
    """
    The offline-mixing buffer whenever there is offline data or a reward transform. A buffer class given by the
    user gets ``offline_ratio`` and the reward transform in ``replay_buffer_kwargs`` too if it can mix (unless
    those kwargs set them and EXPO's are the defaults); one that cannot (SB3's ``ReplayBuffer``,
    ``HerReplayBuffer``) would silently drop the transform, so that is an error.
    """
    if replay_buffer_class is None:
        mixing_kwargs = "offline_ratio" in replay_buffer_kwargs or "reward_transform" in replay_buffer_kwargs
        if not has_offline_data and reward_transform.is_identity and not mixing_kwargs:
            return None  # SB3's choice
        is_dict = isinstance(observation_space, spaces.Dict)
        replay_buffer_class = DictOfflineReplayBuffer if is_dict else OfflineReplayBuffer
    if issubclass(replay_buffer_class, OfflineMixingMixin):
        for key, value, default in [
            ("offline_ratio", offline_ratio, DEFAULT_OFFLINE_RATIO),
            ("reward_transform", reward_transform, RewardTransform()),
        ]:
            given = replay_buffer_kwargs.setdefault(key, value)
            if given != value and value != default:
                raise ValueError(f"replay_buffer_kwargs {key}={given!r} disagrees with EXPO's {key} ({value!r}): set it once")
    elif not reward_transform.is_identity:
        raise ValueError(
            f"reward_scale={reward_transform.scale} / reward_shift={reward_transform.shift} need a buffer that transforms "
            f"sampled rewards, and {replay_buffer_class.__name__} does not: leave replay_buffer_class unset (EXPO then "
            "picks OfflineReplayBuffer / DictOfflineReplayBuffer) or pass one of those."
        )
    return replay_buffer_class


def chunk_buffer_class(replay_buffer_class: type[ReplayBuffer] | None, observation_space: spaces.Space) -> type[ReplayBuffer]:
    """A buffer that samples action chunks (:mod:`sb3_expo.chunks`): SB3's default becomes one, another must be one."""
    if replay_buffer_class is None:
        return DictChunkReplayBuffer if isinstance(observation_space, spaces.Dict) else ChunkReplayBuffer
    if not issubclass(replay_buffer_class, ChunkSamplingMixin):
        raise ValueError(
            f"action_chunk > 1 needs a replay buffer that samples action chunks, and {replay_buffer_class.__name__} "
            "samples single steps: leave replay_buffer_class unset, or pass one of sb3_expo.buffers' / sb3_expo.chunks'"
        )
    return replay_buffer_class


class OfflineToOnline:
    """Offline data for an EXPO model: attach it (and re-attach it after loading a replay buffer), pretrain on it, and
    choose what the base imitates online."""

    def _check_recorded_env(self, recorded_env_id: str | None) -> None:
        """Warn when the data names another task than the env's (the spaces were checked already)."""
        spec = self.env.get_attr("spec")[0] if self.env is not None else None
        reason = other_env_warning(recorded_env_id, getattr(spec, "id", None))
        if reason is not None:
            warnings.warn(reason, stacklevel=4)

    def _choose_replay_buffer(self) -> None:
        """
        The replay buffer class and its arguments, before SB3 builds it: the offline-mixing buffer where needed
        (:func:`choose_replay_buffer_class`), chunks of ``action_chunk`` steps, the memory check of image observations.
        """
        reward_transform = RewardTransform(self.reward_scale, self.reward_shift)
        self.replay_buffer_kwargs = dict(self.replay_buffer_kwargs)  # EXPO adds keys: the caller's dict stays as given
        self.replay_buffer_class = choose_replay_buffer_class(
            self.replay_buffer_class, self.replay_buffer_kwargs, self.observation_space,
            self.offline_dataset is not None, self.offline_ratio, reward_transform,
        )  # fmt: skip
        if self.action_chunk > 1:
            self.replay_buffer_class = chunk_buffer_class(self.replay_buffer_class, self.observation_space)
            self.replay_buffer_kwargs.update(action_chunk=self.action_chunk, gamma=self.gamma)
        self._report_buffer_options()
        check_image_observations(self.observation_space, self.buffer_size, self.optimize_memory_usage, stacklevel=4)

    def _report_buffer_options(self) -> None:
        """``offline_ratio`` and the reward transform as the buffer uses them, where ``replay_buffer_kwargs`` set them."""
        self.offline_ratio = self.replay_buffer_kwargs.get("offline_ratio", self.offline_ratio)
        transform = self.replay_buffer_kwargs.get("reward_transform")
        if transform is not None:
            self.reward_scale, self.reward_shift = transform.scale, transform.shift

    def attach_offline_data(self, dataset: OfflineSource | None = None) -> None:
        """
        Load offline data and mix it into every replay-buffer sample (``offline_ratio``).

        :param dataset: a Minari id, an HDF5 path or :class:`~sb3_expo.data.OfflineTransitions`;
            by default the model's ``offline_dataset``. Replaces any data attached before.
        :raises ValueError: the data does not match the env's spaces, or the replay buffer cannot mix
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
        self._check_recorded_env(transitions.recorded_env_id)
        check_offline_batch_size(self.batch_size, self.replay_buffer.offline_size, self.offline_ratio, stacklevel=3)
        self._offline_transitions = transitions
        self.offline_dataset = dataset

    def pretrain(
        self: SelfOfflineToOnline,
        n_steps: int,
        critic_steps: int | str = "auto",
        batch_size: int | None = None,
        log_interval: int = 1000,
        tb_log_name: str = "EXPO",
        progress_bar: bool = False,
        critic: bool = False,
    ) -> SelfOfflineToOnline:
        """
        Offline-to-online: pretrain on the offline data only, before :meth:`learn`.

        First the base policy and its EMA imitate the data for ``n_steps`` steps. Then ``critic_steps`` of
        :meth:`train`'s UTD blocks run on offline batches (critics, base, edit actor, temperature: the reference's
        ``pretrain_q`` / ``pretrain_edit``), so that fitted critics rank the on-the-fly action from the first online
        step: untrained ones pick bad candidates, and the policy forgets the data (docs/algorithm.md, "Fine-tuning
        recipe"). ``critic_steps=0`` is the paper's procedure (imitation only). Pretraining also sets
        ``learning_starts`` to 0: uniform random actions after pretraining would only fill the buffer with noise.
        TensorBoard: ``pretrain/*`` (imitation, then the ``train/*`` keys of the critic pretraining under that prefix),
        in the run of the following ``learn()``, on an axis of pretraining steps (imitation steps plus offline UTD
        blocks) that continues across calls and saved models; ``train/*`` stays online learning's, on env steps.

        :param n_steps: imitation steps of the base policy (0: none)
        :param critic_steps: offline UTD blocks of ``gradient_steps`` critic updates after imitation; ``"auto"``:
            as many critic updates as imitation steps (``ceil(n_steps / gradient_steps)`` blocks)
        :param batch_size: minibatch size (default: the model's ``batch_size``)
        :param log_interval: steps between two log records
        :param tb_log_name: name of the TensorBoard run
        :param progress_bar: show a tqdm progress bar
        :param critic: the earlier spelling of ``pretrain(0, critic_steps=n_steps)``: offline UTD blocks only
        :raises ValueError: no offline data is attached, or a step count is negative
        """
        if critic:
            n_steps, critic_steps = 0, n_steps
        if critic_steps == "auto":
            critic_steps = math.ceil(n_steps / self.gradient_steps)
        if not isinstance(critic_steps, int) or critic_steps < 0 or n_steps < 0:
            raise ValueError(
                f"pretrain() needs step counts >= 0 (critic_steps: an int or 'auto'), got {n_steps}, {critic_steps!r}"
            )
        if not isinstance(self.replay_buffer, OfflineMixingMixin) or self.replay_buffer.offline_size == 0:
            raise ValueError("pretrain() imitates offline data: pass offline_dataset=... to EXPO first")
        self._prepare_pretraining_log(tb_log_name)
        if batch_size is not None:
            check_offline_batch_size(batch_size, self.replay_buffer.offline_size, self.offline_ratio, stacklevel=3)
        batch_size = batch_size or self.batch_size
        if n_steps:
            self._pretrain_base(
                self._steps(n_steps, progress_bar, "pretraining the base policy"), n_steps, batch_size, log_interval
            )
        if critic_steps:
            steps = self._steps(critic_steps, progress_bar, "pretraining the critics and the edit actor")
            self._pretrain_critics(steps, critic_steps, batch_size, log_interval)
        self.learning_starts = 0
        return self

    def learn(
        self: SelfOfflineToOnline,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "EXPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfOfflineToOnline:
        """
        SB3's ``learn``. When :meth:`pretrain` opened the TensorBoard run, the first ``learn()`` continues it; later ones
        choose their run as SB3 does without pretraining (a new one when ``reset_num_timesteps`` restarts the
        env-step axis), so that no curve steps back.
        """
        super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)  # type: ignore[misc]
        if self._run_opened_by_pretrain:
            self._custom_logger = self._run_opened_by_pretrain = False
        return self

    def _prepare_pretraining_log(self, tb_log_name: str) -> None:
        """
        Open a TensorBoard run if ``learn()`` has not (the first ``learn()`` continues it), and drop the records that
        no dump has written yet: the last ``train()`` call's, which belong to the env-step axis (the next one
        replaces them) and which pretraining's dumps would write at a pretraining step.
        """
        if getattr(self, "_logger", None) is None:
            self.set_logger(configure_logger(self.verbose, self.tensorboard_log, tb_log_name, reset_num_timesteps=True))
            self._run_opened_by_pretrain = True
        for records in (self.logger.name_to_value, self.logger.name_to_count, self.logger.name_to_excluded):
            records.clear()

    @staticmethod
    def _steps(n_steps: int, progress_bar: bool, description: str) -> Iterable[int]:
        if not progress_bar:
            return range(n_steps)
        from tqdm.auto import tqdm

        return tqdm(range(n_steps), desc=description)

    def _pretrain_critics(self, steps: Iterable[int], n_steps: int, batch_size: int, log_interval: int) -> None:
        for step in steps:
            data = self.replay_buffer.sample_offline(self.gradient_steps * batch_size, env=self._vec_normalize_env)
            self._train_on(data, self.gradient_steps, batch_size, log_prefix="pretrain")
            self._n_pretrain_steps += 1
            if (step + 1) % log_interval == 0 or step + 1 == n_steps:
                self.logger.dump(step=self._n_pretrain_steps)

    def _pretrain_base(self, steps: Iterable[int], n_steps: int, batch_size: int, log_interval: int) -> None:
        self.policy.set_training_mode(True)
        losses = []
        for step in steps:
            self._update_learning_rates()  # at every step, as the reference's optax schedule does (the base's decays)
            data = self.replay_buffer.sample_offline(batch_size, self._vec_normalize_env)
            obs = self.policy.extract_features(data.observations, self.policy.features_extractor)  # imitation needs no s'
            losses.append(self.steps.base_step(obs, data.actions)["base_loss"])
            self._n_base_updates += 1
            self._n_pretrain_steps += 1
            if (step + 1) % log_interval == 0 or step + 1 == n_steps:
                self._log_pretraining(th.stack(losses).mean().item())
                losses = []

    def _log_pretraining(self, base_loss: float) -> None:
        check_finite_base_loss(base_loss, self._n_base_updates)
        self.logger.record("pretrain/base_loss", base_loss)
        self.logger.record("pretrain/base_learning_rate", self.base.optimizer.param_groups[0]["lr"])
        self.logger.record("pretrain/n_base_updates", self._n_base_updates, exclude="tensorboard")
        self.logger.dump(step=self._n_pretrain_steps)

    def _imitation_rows(self, batch_size: int, metrics: TrainMetrics) -> tuple[th.Tensor, th.Tensor] | None:
        """
        What the next base step imitates (``base_imitates``): ``None`` for the stretch's last minibatch (the paper), or
        features and actions of offline rows and successful online episodes (:meth:`OfflineMixingMixin.sample_imitation`).
        """
        buffer = self.replay_buffer
        if self.base_imitates == "all" or not isinstance(buffer, OfflineMixingMixin) or buffer.offline_size == 0:
            return None
        observations, actions, online_share = buffer.sample_imitation(batch_size, env=self._vec_normalize_env)
        metrics.add({"imitation_online_share": th.tensor(online_share, device=self.device)})
        return self.policy.extract_features(observations, self.policy.features_extractor), actions

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """SB3's ``load_replay_buffer``, then the offline data (never saved in the file) is attached again."""
        super().load_replay_buffer(path, truncate_last_traj)
        if self._offline_transitions is not None and isinstance(self.replay_buffer, OfflineMixingMixin):
            self.replay_buffer.attach_offline(self._offline_transitions)
