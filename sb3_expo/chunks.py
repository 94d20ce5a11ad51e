"""
Action chunks: transitions that join ``h`` consecutive steps of one episode, for critics and policies that act
``h`` steps at a time (docs/algorithm.md).

A chunk starting at step ``t`` holds the actions ``a_t, ..., a_{t+h-1}`` flattened to ``h * action_dim``, and its
target is the SMDP backup over the ``j <= h`` steps the episode still lasts::

    R = sum_{i < j} gamma^i r_{t+i},    target = R + gamma^j (1 - terminal) Q(s_{t+j}, .)

``j`` is ``h`` unless the episode ends inside the chunk: at a termination (``terminal`` is then 1: no bootstrap)
or a time-limit truncation (the target still bootstraps from ``s_{t+j}``, the true next observation stored with the
truncated step). Every step starts a chunk, so a chunk near an episode's end is short; its actions past the end are
*padded by repeating the episode's last real action* (a valid action the policy could have sent, which the env
never sees and which earns no reward). The discount to use in place of ``gamma`` is ``gamma^j``, per row.

Offline data is chunked with :func:`chunk_offline`; online data with :class:`ChunkReplayBuffer` /
:class:`DictChunkReplayBuffer`, which store single steps exactly as SB3 does and assemble chunks when sampling.
With ``h = 1`` both give the one-step transitions unchanged (the buffers are then SB3's own samples).
"""

import dataclasses
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from sb3_expo.data.transitions import Observations, OfflineTransitions, map_observations


def check_chunk_settings(horizon: int, gamma: float) -> None:
    """:raises ValueError: the horizon is not a positive int or gamma is not in (0, 1]"""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"The action chunk (horizon) must be an int >= 1, got {horizon!r}")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")


def chunk_lengths(episode_ends: np.ndarray, horizon: int) -> np.ndarray:
    """
    How many real steps ``j`` the chunk starting at each row holds: up to and including the row's episode end, at
    most ``horizon``.

    :param episode_ends: bool ``(n,)``, True on each episode's last row; the last row must be one
    :return: int64 ``(n,)`` in ``[1, horizon]``
    """
    n_rows = len(episode_ends)
    rows = np.arange(n_rows)
    end_rows = np.where(episode_ends, rows, n_rows)
    next_end = np.minimum.accumulate(end_rows[::-1])[::-1]  # the first end at or after each row
    if n_rows and next_end[-1] == n_rows:
        raise ValueError("The last row must end an episode (nothing follows it)")
    return np.minimum(next_end - rows + 1, horizon).astype(np.int64)


def chunk_rows(starts: np.ndarray, lengths: np.ndarray, horizon: int, wrap: int | None = None) -> np.ndarray:
    """
    The row of each step of each chunk: ``start + i`` for ``i < j``, then the last real row again (the padding
    repeats the last real action, and the last column is always the chunk's last real step).

    :param starts: ``(B,)`` first rows
    :param lengths: ``(B,)`` real steps ``j`` of each chunk
    :param wrap: the size of a circular buffer, whose rows are taken modulo it
    :return: int ``(B, horizon)``
    """
    offsets = np.minimum(np.arange(horizon)[None, :], lengths[:, None] - 1)
    rows = starts[:, None] + offsets
    return rows if wrap is None else rows % wrap


def flatten_chunks(actions: np.ndarray) -> np.ndarray:
    """Chunks of actions ``(B, h, action_dim)`` as the rows the networks take, ``(B, h * action_dim)`` (B may be 0)."""
    return actions.reshape(len(actions), int(np.prod(actions.shape[1:])))


def discounted_returns(step_rewards: np.ndarray, lengths: np.ndarray, gamma: float) -> np.ndarray:
    """
    ``sum_{i < j} gamma^i r_i`` per chunk: padded steps earn nothing.

    :param step_rewards: ``(B, h)`` rewards of the chunk's steps (any value on padded steps)
    :param lengths: ``(B,)`` real steps ``j``
    :return: float32 ``(B,)``
    """
    horizon = step_rewards.shape[1]
    weights = (gamma ** np.arange(horizon, dtype=np.float64)).astype(np.float32)
    real = np.arange(horizon)[None, :] < lengths[:, None]
    return np.where(real, step_rewards * weights, 0.0).sum(axis=1, dtype=np.float32)


def chunk_discounts(lengths: np.ndarray, gamma: float) -> np.ndarray:
    """``gamma^j`` per chunk, float32 ``(B,)``: the discount of the bootstrapped value."""
    return (gamma ** lengths.astype(np.float64)).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class ChunkedTransitions:
    """
    Offline transitions joined into action chunks, one chunk starting at every row of the data.

    :param observations: ``s_t``, the rows' observations (Box array or dict of arrays)
    :param actions: ``(n, horizon * action_dim)``: ``a_t .. a_{t+h-1}``, step after step, padded past the episode's
        end with its last real action
    :param rewards: ``(n,)`` ``R = sum_{i < j} gamma^i r_{t+i}``
    :param discounts: ``(n,)`` ``gamma^j``, the discount of the bootstrapped value
    :param terminals: ``(n,)`` 1.0 where the episode terminated inside the chunk (no bootstrap)
    :param next_observations: ``s_{t+j}``, the next observation of the chunk's last real step
    :param lengths: ``(n,)`` the real steps ``j`` of each chunk, in ``[1, horizon]``
    :param horizon: ``h``
    """

    observations: Observations
    actions: np.ndarray
    rewards: np.ndarray
    discounts: np.ndarray
    terminals: np.ndarray
    next_observations: Observations
    lengths: np.ndarray
    horizon: int

    def __len__(self) -> int:
        return len(self.rewards)


def chunk_offline(transitions: OfflineTransitions, horizon: int, gamma: float) -> ChunkedTransitions:
    """
    Join offline transitions into action chunks of ``horizon`` steps that never cross an episode end
    (:attr:`OfflineTransitions.episode_ends`, filled by the loaders or inferred). A terminal row always ends its
    episode, so a chunk is terminal exactly when its last real step is. ``horizon=1`` gives the rows as they are.

    :param transitions: one-step offline transitions, rows of an episode consecutive
    :param horizon: the chunk length ``h``
    :param gamma: the discount factor
    :return: one chunk per row (observations shared with ``transitions``, not copied)
    """
    check_chunk_settings(horizon, gamma)
    assert transitions.episode_ends is not None  # filled on creation
    lengths = chunk_lengths(transitions.episode_ends, horizon)
    rows = chunk_rows(np.arange(len(transitions)), lengths, horizon)
    last = rows[:, -1]
    return ChunkedTransitions(
        observations=transitions.observations,
        actions=flatten_chunks(transitions.actions[rows]),
        rewards=discounted_returns(transitions.rewards[rows], lengths, gamma),
        discounts=chunk_discounts(lengths, gamma),
        terminals=transitions.terminals[last],
        next_observations=map_observations(lambda array: array[last], transitions.next_observations),
        lengths=lengths,
        horizon=horizon,
    )


class ChunkSamplingMixin:
    """
    Chunk sampling on top of an SB3 replay buffer: single steps are stored as SB3 stores them, and a sample starting
    at step ``t`` of env ``e`` is the chunk of the steps ``t, t+1, ...`` of that env (see the module's docstring).

    A chunk stops at the first step that ends an episode: ``done`` (terminated or truncated, as SB3 stores it) or a
    ``TimeLimit.truncated`` timeout; its ``dones`` is SB3's ``done * (1 - timeout)`` of that step, so a truncation
    bootstraps. It also stops at the newest step written (``pos - 1``): what follows it in the circular buffer is
    not written yet, or, once the buffer is full, the oldest steps of another stretch of time. That step is then
    treated like a truncation: the chunk is short and bootstraps from the step's stored next observation, which is
    its true successor. Chunks cross the buffer's physical end (the write wraps around) like any other step.

    Samples hold ``discounts`` (``gamma^j``, shape ``(B, 1)``) for ``action_chunk > 1``; with ``action_chunk == 1``
    sampling is SB3's own, unchanged (``discounts`` is None). SB3's ``optimize_memory_usage`` needs
    ``action_chunk == 1``.

    :param action_chunk: the chunk length ``h``
    :param gamma: the discount factor of the chunk returns and ``discounts``
    """

    # Defaults for buffers pickled or saved before chunks existed (their instances lack these attributes).
    action_chunk: int = 1
    gamma: float = 0.99

    # Provided by the SB3 buffer this mixin is combined with.
    buffer_size: int
    n_envs: int
    pos: int
    observations: Any
    next_observations: Any
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    timeouts: np.ndarray
    observation_space: spaces.Space
    optimize_memory_usage: bool

    def __init__(self, *args: Any, action_chunk: int = 1, gamma: float = 0.99, **kwargs: Any):
        check_chunk_settings(action_chunk, gamma)
        super().__init__(*args, **kwargs)
        if action_chunk > 1 and self.optimize_memory_usage:
            raise ValueError("optimize_memory_usage=True needs action_chunk=1 (chunks read each step's next observation)")
        self.action_chunk = int(action_chunk)
        self.gamma = float(gamma)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> Any:
        """SB3's samples for ``action_chunk == 1``, else chunks starting at ``batch_inds`` in random envs (as SB3)."""
        if self.action_chunk == 1:
            return super()._get_samples(batch_inds, env)  # type: ignore[misc]
        env_indices = np.random.randint(0, self.n_envs, size=(len(batch_inds),))
        return self.chunk_samples(batch_inds, env_indices, env)

    def online_chunks(self, starts: np.ndarray, env_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """
        The buffer rows of the chunks starting at ``starts`` in ``env_indices``, and their real lengths ``j``.

        :return: rows ``(B, h)`` (padded with the last real row) and lengths ``(B,)``
        """
        steps = (starts[:, None] + np.arange(self.action_chunk)[None, :]) % self.buffer_size
        envs = env_indices[:, None]
        newest = (self.pos - 1) % self.buffer_size
        # SB3's off-policy loop stores done for truncations too; the timeout flag also catches a caller that does not.
        ends = (self.dones[steps, envs] != 0) | (self.timeouts[steps, envs] != 0) | (steps == newest)
        ends[:, -1] = True
        lengths = ends.argmax(axis=1) + 1
        return chunk_rows(starts, lengths, self.action_chunk, wrap=self.buffer_size), lengths

    def chunk_samples(self, starts: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None = None) -> Any:
        """
        The chunks starting at buffer rows ``starts`` of envs ``env_indices``, as samples with ``discounts``.

        :param starts: ``(B,)`` rows written already
        :param env_indices: ``(B,)`` env of each chunk
        :param env: VecNormalize env that normalises observations and per-step rewards, as in SB3
        """
        rows, lengths = self.online_chunks(starts, env_indices)
        last = rows[:, -1]
        return self.assemble_chunks(
            observations=map_observations(lambda array: array[starts, env_indices], self.observations),
            actions=self.actions[rows, env_indices[:, None]],
            step_rewards=self.rewards[rows, env_indices[:, None]],
            lengths=lengths,
            next_observations=map_observations(lambda array: array[last, env_indices], self.next_observations),
            dones=self.dones[last, env_indices] * (1.0 - self.timeouts[last, env_indices]),
            env=env,
        )

    def assemble_chunks(
        self,
        observations: Observations,
        actions: np.ndarray,
        step_rewards: np.ndarray,
        lengths: np.ndarray,
        next_observations: Observations,
        dones: np.ndarray,
        env: VecNormalize | None,
    ) -> Any:
        """
        Samples of gathered chunks: observations normalised, rewards normalised and transformed step by step
        (:meth:`_step_rewards`) before they are summed, actions flattened to ``(B, h * action_dim)``.
        """
        rewards = discounted_returns(self._step_rewards(step_rewards, env), lengths, self.gamma)
        samples_class = DictReplayBufferSamples if isinstance(self.observation_space, spaces.Dict) else ReplayBufferSamples
        return samples_class(
            observations=self._torch_observations(observations, env),
            actions=self.to_torch(flatten_chunks(actions)),  # type: ignore[attr-defined]
            next_observations=self._torch_observations(next_observations, env),
            dones=self.to_torch(np.asarray(dones, dtype=np.float32).reshape(-1, 1)),  # type: ignore[attr-defined]
            rewards=self.to_torch(rewards.reshape(-1, 1)),  # type: ignore[attr-defined]
            discounts=self.to_torch(chunk_discounts(lengths, self.gamma).reshape(-1, 1)),  # type: ignore[attr-defined]
        )

    def _step_rewards(self, rewards: np.ndarray, env: VecNormalize | None) -> np.ndarray:
        """Per-step rewards as the critic sees them (VecNormalize's scale), before the chunk sums them."""
        return self._normalize_reward(rewards, env)  # type: ignore[attr-defined]

    def _torch_observations(self, observations: Observations, env: VecNormalize | None) -> th.Tensor | dict[str, th.Tensor]:
        normalized = self._normalize_obs(observations, env)  # type: ignore[attr-defined]
        return map_observations(self.to_torch, normalized)  # type: ignore[attr-defined]


class ChunkReplayBuffer(ChunkSamplingMixin, ReplayBuffer):
    """SB3 ``ReplayBuffer`` (Box observations) that samples action chunks; see :class:`ChunkSamplingMixin`."""


class DictChunkReplayBuffer(ChunkSamplingMixin, DictReplayBuffer):
    """SB3 ``DictReplayBuffer`` (Dict observations) that samples action chunks; see :class:`ChunkSamplingMixin`."""
