"""
Offline/online mixing as SB3 replay buffers: RLPD's "symmetric sampling" (docs/algorithm.md, "One update").

The buffers are SB3's own ``ReplayBuffer`` / ``DictReplayBuffer`` (they store the online transitions
exactly as SB3 does, and sample them as SB3 does unless ``action_chunk > 1``: see :mod:`sb3_expo.chunks`)
plus one in-memory set of offline transitions. ``sample(n)`` returns a batch in which
a fixed share ``offline_ratio`` of rows is drawn uniformly from the offline data and the rest uniformly
from the online buffer, arranged so that every aligned minibatch of a larger sample is mixed in the same
ratio (see :func:`offline_row_mask`)::

    model = EXPO("MlpPolicy", env, replay_buffer_class=OfflineReplayBuffer,
                 replay_buffer_kwargs=dict(offline_ratio=0.5, reward_transform=RewardTransform(shift=-1.0)))
    model.replay_buffer.attach_offline(load_minari("D4RL/antmaze/medium-diverse-v1"))
    model.learn(1_000_000)

The offline data is never pickled (see :meth:`OfflineMixingMixin.__getstate__`): after
``EXPO.load``, ``load_replay_buffer`` or ``load_from_pkl`` call ``attach_offline`` again.
"""

from fractions import Fraction
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from sb3_expo.chunks import ChunkReplayBuffer, DictChunkReplayBuffer, chunk_lengths, chunk_rows, flatten_chunks
from sb3_expo.data.transitions import (
    Observations,
    OfflineTransitions,
    RewardTransform,
    map_observations,
    scale_actions,
    validate_against_env,
)

Samples = TypeVar("Samples", ReplayBufferSamples, DictReplayBufferSamples)
TensorObs = th.Tensor | dict[str, th.Tensor]

# offline_ratio is read as the nearest fraction with at most this denominator, so the row pattern is exact.
MAX_RATIO_DENOMINATOR = 1_000_000
# Offline actions are clipped to ±this, in [-1, 1] units (the reference's ``clip_to_eps``).
OFFLINE_ACTION_LIMIT = 1.0 - 1e-5
# The sample fields that are mixed row by row (``discounts`` too where samples have them: action chunks).
MIXED_FIELDS = ("observations", "actions", "next_observations", "dones", "rewards")


def offline_row_mask(batch_size: int, offline_ratio: float) -> np.ndarray:
    """
    Which rows of a batch are offline: row ``i`` iff ``floor((i+1)·r) - floor(i·r) == 1``.

    EXPO draws ``G·B`` rows in one sample and slices them into ``G`` consecutive minibatches of ``B``
    rows; each minibatch must hold the same share of offline data (RLPD's symmetric sampling). This
    fixed pattern spreads offline rows evenly, so every aligned slice ``[k·B, (k+1)·B)`` with ``B·r``
    integral holds exactly ``B·r`` offline rows, whatever ``G``. The ratio is taken as an exact fraction
    (denominator at most 10^6), so e.g. ``r = 0.3`` gives exactly 3 offline rows per 10, free of
    floating-point round-off.

    :param batch_size: number of rows
    :param offline_ratio: share of offline rows, in [0, 1]
    :return: boolean mask ``(batch_size,)``, True for offline rows
    """
    ratio = Fraction(offline_ratio).limit_denominator(MAX_RATIO_DENOMINATOR)
    n_offline_before = np.arange(batch_size + 1, dtype=np.int64) * ratio.numerator // ratio.denominator
    return np.diff(n_offline_before) == 1


class _OfflineArrays(NamedTuple):
    """The attached offline data, already in the buffer's units and dtypes (actions in [-1, 1])."""

    observations: Observations
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: Observations
    terminals: np.ndarray
    # The real steps of the chunk starting at each row (action_chunk > 1; chunks are gathered when sampled).
    chunk_lengths: np.ndarray | None = None


def _cast_like(observations: Observations, like: np.ndarray | dict[str, np.ndarray]) -> Observations:
    """Offline observations in the dtype the buffer stores online ones in, so both halves concatenate."""
    return map_observations(lambda value, stored: np.asarray(value, dtype=stored.dtype), observations, like)


def _interleave(offline: TensorObs, online: TensorObs, order: th.Tensor) -> TensorObs:
    """Concatenate offline then online rows and reorder them so offline rows land where the mask says."""
    return map_observations(lambda first, second: th.cat([first, second])[order], offline, online)


def _merge_order(mask: np.ndarray) -> np.ndarray:
    """Index into ``cat([offline rows, online rows])`` that puts the k-th offline row at the k-th True of ``mask``."""
    n_offline = int(mask.sum())
    order = np.empty(len(mask), dtype=np.int64)
    order[mask] = np.arange(n_offline)
    order[~mask] = n_offline + np.arange(len(mask) - n_offline)
    return order


class OfflineMixingMixin:
    """
    Symmetric offline/online sampling on top of an SB3 replay buffer (RLPD, docs/algorithm.md, "One update").

    Offline rows are drawn uniformly with replacement from the attached data and online rows uniformly
    with replacement by SB3's own sampler; a fixed pattern (:func:`offline_row_mask`) decides which rows
    are which. Every batch holds offline rows only while the online buffer is empty, and online rows only
    when no offline data is attached or ``offline_ratio == 0``.

    Both halves are treated alike: observations and rewards pass through the VecNormalize ``env`` given
    to :meth:`sample`, then the ``reward_transform`` is applied to every reward (so AntMaze's ``r - 1`` is
    exactly -1 per step in the units the critic sees). ``dones`` are the offline terminals and, for online
    rows, SB3's ``done * (1 - timeout)``: a time limit is never a terminal.

    The offline data is never pickled: ``model.save_replay_buffer`` files and model zips do not grow with the
    dataset. After unpickling, :attr:`offline_size` is 0 (online-only sampling) until :meth:`attach_offline`
    is called again.

    :param buffer_size: max number of online transitions
    :param observation_space: observation space
    :param action_space: action space (Box)
    :param device: PyTorch device of the sampled tensors
    :param n_envs: number of parallel environments
    :param optimize_memory_usage: SB3's memory-efficient variant (Box observations only)
    :param handle_timeout_termination: whether online time-limit truncations are not terminals (SB3's default)
    :param offline_ratio: share of offline rows in every batch once both parts hold data (the paper: 0.5)
    :param reward_transform: affine transform applied to every sampled reward, offline and online alike
        (e.g. ``RewardTransform(shift=-1.0)`` on AntMaze); None leaves rewards unchanged. With action chunks it is
        applied to each step's reward before the chunk sums them (``shift`` is earned once per real step).
    :param action_chunk: ``h``: with ``h > 1`` every row, offline and online, is an action chunk of up to ``h``
        steps of one episode with its SMDP return and ``discounts`` (:mod:`sb3_expo.chunks`); ``h = 1`` samples
        one-step rows exactly as before (``discounts`` None)
    :param gamma: the discount of the chunk returns and ``discounts`` (unused for ``h = 1``)
    """

    # Provided by the SB3 buffer this mixin is combined with.
    observation_space: spaces.Space
    action_space: spaces.Space
    observations: np.ndarray | dict[str, np.ndarray]
    actions: np.ndarray
    device: th.device
    # Provided by ChunkSamplingMixin (sb3_expo.chunks), which the concrete buffers below are built on.
    action_chunk: int
    gamma: float

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        offline_ratio: float = 0.5,
        reward_transform: RewardTransform | None = None,
        action_chunk: int = 1,
        gamma: float = 0.99,
    ):
        if not 0.0 <= offline_ratio <= 1.0:
            raise ValueError(f"offline_ratio must be in [0, 1], got {offline_ratio}")
        super().__init__(  # type: ignore[call-arg]
            buffer_size,
            observation_space,
            action_space,
            device,
            n_envs,
            optimize_memory_usage,
            handle_timeout_termination,
            action_chunk=action_chunk,
            gamma=gamma,
        )
        self.offline_ratio = float(offline_ratio)
        self.reward_transform = reward_transform if reward_transform is not None else RewardTransform()
        self._offline: _OfflineArrays | None = None
        # Online rows of episodes that ended with info["is_success"]: what imitation may learn from (sample_imitation).
        self.successful = np.zeros((self.buffer_size, self.n_envs), dtype=bool)  # type: ignore[attr-defined]
        self._episode_lengths = np.zeros(self.n_envs, dtype=np.int64)  # type: ignore[attr-defined]

    @property
    def offline_size(self) -> int:
        """Number of attached offline transitions (0 when none are attached, e.g. after unpickling)."""
        return 0 if self._offline is None else len(self._offline.rewards)

    def attach_offline(self, transitions: OfflineTransitions) -> None:
        """
        Attach offline data to mix into every sample, replacing any attached before.

        The data is checked against the buffer's spaces first, so a wrong dataset fails here rather than
        deep inside training. Actions are mapped from the env's bounds to [-1, 1], the units SB3 stores
        online actions in (``squash_output=True``), and clipped to ±(1 - 1e-5) as the reference's loaders
        do, so that dataset actions recorded exactly at the bounds stay inside the open interval of the
        edit actor's tanh. With action chunks, the chunk lengths are computed here from the data's
        ``episode_ends`` (a chunk never crosses one); the chunks themselves are gathered when sampled. The arrays
        are kept in host memory, not pickled.

        :param transitions: offline transitions in the environment's units
        :raises ValueError: if the data does not fit the spaces (see :func:`validate_against_env`) or is empty
        """
        validate_against_env(transitions, self.observation_space, self.action_space)
        if len(transitions) == 0:
            raise ValueError("The offline transitions are empty")
        scaled_actions = scale_actions(transitions.actions, self.action_space)  # type: ignore[arg-type]
        actions = np.clip(scaled_actions, -OFFLINE_ACTION_LIMIT, OFFLINE_ACTION_LIMIT).astype(self.actions.dtype, copy=False)
        self._offline = _OfflineArrays(
            observations=_cast_like(transitions.observations, self.observations),
            actions=actions,
            rewards=transitions.rewards,
            next_observations=_cast_like(transitions.next_observations, self.observations),
            terminals=transitions.terminals,
            chunk_lengths=None if self.action_chunk == 1 else chunk_lengths(transitions.episode_ends, self.action_chunk),
        )

    def add(
        self, obs: Any, next_obs: Any, action: np.ndarray, reward: np.ndarray, done: np.ndarray, infos: list[dict]
    ) -> None:
        """
        SB3's ``add``, and the bookkeeping of successful episodes: when an env's episode ends with
        ``info["is_success"]`` true, all its rows still in the buffer are marked as successful.
        """
        self.successful[self.pos] = False  # type: ignore[attr-defined]  # the row about to be overwritten
        super().add(obs, next_obs, action, reward, done, infos)  # type: ignore[misc]
        self._episode_lengths += 1
        for env_index in np.flatnonzero(done):
            if infos[env_index].get("is_success", False):
                length = min(int(self._episode_lengths[env_index]), self.buffer_size)  # type: ignore[attr-defined]
                rows = (self.pos - 1 - np.arange(length)) % self.buffer_size  # type: ignore[attr-defined]
                self.successful[rows, env_index] = True
            self._episode_lengths[env_index] = 0

    @property
    def n_successful(self) -> int:
        """Online rows of successful episodes (see :meth:`add`)."""
        return int(self.successful.sum())

    def sample_imitation(self, batch_size: int, env: VecNormalize | None = None) -> tuple[TensorObs, th.Tensor, float]:
        """
        Rows for the base policy to imitate: uniform over the offline data and the online rows of successful
        episodes together, so that imitation never learns from the policy's own failures (docs/algorithm.md).

        :param batch_size: number of rows
        :param env: VecNormalize env, as in :meth:`sample`
        :return: observations, actions (in [-1, 1]; action chunks ``(B, h * action_dim)`` for ``h > 1``, which stay
            inside their episode, so inside a successful one) and the share of rows drawn from online data
        :raises ValueError: neither offline data nor a successful online episode is there to imitate
        """
        success_rows = np.argwhere(self.successful)
        n_offline = self.offline_size
        if n_offline + len(success_rows) == 0:
            raise ValueError("Nothing to imitate: no offline data is attached and no online episode succeeded yet")
        picks = np.random.randint(0, n_offline + len(success_rows), size=batch_size)
        online = success_rows[picks[picks >= n_offline] - n_offline]
        offline_indices = picks[picks < n_offline]
        online_obs = map_observations(lambda array: array[online[:, 0], online[:, 1]], self.observations)
        actions = self._online_actions(online[:, 0], online[:, 1])
        if len(offline_indices):
            assert self._offline is not None
            offline_obs = map_observations(lambda array: array[offline_indices], self._offline.observations)
            online_obs = map_observations(lambda first, second: np.concatenate([first, second]), offline_obs, online_obs)
            actions = np.concatenate([self._offline_actions(offline_indices), actions])
        observations = self._normalize_obs(online_obs, env)  # type: ignore[attr-defined]
        torch_obs = map_observations(self.to_torch, observations)  # type: ignore[attr-defined]
        return torch_obs, self.to_torch(actions), len(online) / batch_size  # type: ignore[attr-defined]

    def _online_actions(self, starts: np.ndarray, env_indices: np.ndarray) -> np.ndarray:
        """The online actions (chunks for ``h > 1``) starting at buffer rows ``starts`` of envs ``env_indices``."""
        if self.action_chunk == 1:
            return self.actions[starts, env_indices]
        rows, _ = self.online_chunks(starts, env_indices)  # type: ignore[attr-defined]
        return flatten_chunks(self.actions[rows, env_indices[:, None]])

    def _offline_actions(self, indices: np.ndarray) -> np.ndarray:
        """The offline actions (chunks for ``h > 1``) starting at rows ``indices``."""
        assert self._offline is not None
        if self._offline.chunk_lengths is None:
            return self._offline.actions[indices]
        rows = chunk_rows(indices, self._offline.chunk_lengths[indices], self.action_chunk)
        return flatten_chunks(self._offline.actions[rows])

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> Any:
        """
        Sample a mixed batch; offline rows sit where :func:`offline_row_mask` puts them.

        :param batch_size: number of rows (EXPO: ``gradient_steps * batch_size``, sliced into minibatches)
        :param env: VecNormalize env that normalises observations and rewards of both parts, as in SB3
        :return: ``ReplayBufferSamples`` or ``DictReplayBufferSamples`` on the buffer's device
        """
        mask = self._offline_mask(batch_size)
        n_offline = int(mask.sum())
        if n_offline == 0:
            samples = super().sample(batch_size, env=env)  # type: ignore[misc]
        elif n_offline == batch_size:
            samples = self._sample_offline(batch_size, env)
        else:
            offline = self._sample_offline(n_offline, env)
            online = super().sample(batch_size - n_offline, env=env)  # type: ignore[misc]
            samples = self._merge(offline, online, mask)
        return self._transform_rewards(samples)

    def sample_offline(self, batch_size: int, env: VecNormalize | None = None) -> Any:
        """
        Sample offline rows only, e.g. to pretrain the base policy by imitation (``EXPO.pretrain``).

        :param batch_size: number of rows
        :param env: VecNormalize env, as in :meth:`sample`
        :raises ValueError: no offline data is attached
        """
        if self.offline_size == 0:
            raise ValueError("No offline data is attached to the replay buffer (attach_offline)")
        return self._transform_rewards(self._sample_offline(batch_size, env))

    def _transform_rewards(self, samples: Samples) -> Samples:
        """The reward transform on one-step rewards; chunk returns got it step by step (:meth:`_step_rewards`)."""
        if self.action_chunk > 1:
            return samples
        return samples._replace(rewards=self.reward_transform(samples.rewards))

    def _step_rewards(self, rewards: np.ndarray, env: VecNormalize | None) -> np.ndarray:
        """Each step's reward of a chunk, normalised then transformed, as a one-step row's would be."""
        return self.reward_transform(super()._step_rewards(rewards, env))  # type: ignore[misc]

    def _offline_mask(self, batch_size: int) -> np.ndarray:
        """The row pattern, or all offline while the online buffer is empty, or all online without offline data."""
        if self.offline_size == 0 or self.offline_ratio == 0.0:
            return np.zeros(batch_size, dtype=bool)
        if self.size() == 0:  # type: ignore[attr-defined]
            return np.ones(batch_size, dtype=bool)
        return offline_row_mask(batch_size, self.offline_ratio)

    def _sample_offline(self, n_rows: int, env: VecNormalize | None) -> Any:
        """``n_rows`` offline rows, uniform with replacement, normalised like SB3 normalises online rows."""
        assert self._offline is not None
        data = self._offline
        indices = np.random.randint(0, len(data.rewards), size=n_rows)
        if data.chunk_lengths is not None:
            return self._offline_chunks(indices, env)
        rows = lambda array: array[indices]  # noqa: E731
        observations = self._normalize_obs(map_observations(rows, data.observations), env)  # type: ignore[attr-defined]
        next_observations = self._normalize_obs(map_observations(rows, data.next_observations), env)  # type: ignore[attr-defined]
        rewards = self._normalize_reward(data.rewards[indices].reshape(-1, 1), env)  # type: ignore[attr-defined]
        return self._samples_class(
            observations=map_observations(self.to_torch, observations),  # type: ignore[attr-defined]
            actions=self.to_torch(data.actions[indices]),  # type: ignore[attr-defined]
            next_observations=map_observations(self.to_torch, next_observations),  # type: ignore[attr-defined]
            dones=self.to_torch(data.terminals[indices].reshape(-1, 1)),  # type: ignore[attr-defined]
            rewards=self.to_torch(rewards),  # type: ignore[attr-defined]
        )

    def _offline_chunks(self, indices: np.ndarray, env: VecNormalize | None) -> Any:
        """The offline chunks starting at rows ``indices``, gathered and summed as online chunks are."""
        data = self._offline
        assert data is not None and data.chunk_lengths is not None
        lengths = data.chunk_lengths[indices]
        rows = chunk_rows(indices, lengths, self.action_chunk)
        last = rows[:, -1]
        return self.assemble_chunks(  # type: ignore[attr-defined]
            observations=map_observations(lambda array: array[indices], data.observations),
            actions=data.actions[rows],
            step_rewards=data.rewards[rows],
            lengths=lengths,
            next_observations=map_observations(lambda array: array[last], data.next_observations),
            dones=data.terminals[last],
            env=env,
        )

    def _merge(self, offline: Samples, online: Samples, mask: np.ndarray) -> Samples:
        """One batch with offline rows at ``mask`` and online rows elsewhere, field by field."""
        order = th.as_tensor(_merge_order(mask), device=self.device)
        fields = MIXED_FIELDS if online.discounts is None else (*MIXED_FIELDS, "discounts")
        mixed = {field: _interleave(getattr(offline, field), getattr(online, field), order) for field in fields}
        return online._replace(**mixed)

    @property
    def _samples_class(self) -> type:
        return DictReplayBufferSamples if isinstance(self.observation_space, spaces.Dict) else ReplayBufferSamples

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the offline data: saved buffers stay the size of the online data; re-attach after loading."""
        state = self.__dict__.copy()
        state["_offline"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Buffers pickled before successful episodes were tracked load with none marked."""
        state.setdefault("successful", np.zeros((state["buffer_size"], state["n_envs"]), dtype=bool))
        state.setdefault("_episode_lengths", np.zeros(state["n_envs"], dtype=np.int64))
        self.__dict__.update(state)


class OfflineReplayBuffer(OfflineMixingMixin, ChunkReplayBuffer):
    """
    SB3 ``ReplayBuffer`` (Box observations) that mixes attached offline data into every sample; see
    :class:`OfflineMixingMixin` for the sampling rules and arguments.
    """


class DictOfflineReplayBuffer(OfflineMixingMixin, DictChunkReplayBuffer):
    """
    SB3 ``DictReplayBuffer`` (Dict observations) that mixes attached offline data into every sample; see
    :class:`OfflineMixingMixin` for the sampling rules and arguments.
    """
