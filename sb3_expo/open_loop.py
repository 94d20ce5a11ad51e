"""
Acting in action chunks: a policy that plans ``h`` actions at once executes them open-loop, one per env step.

SB3 steps an env one action at a time and asks the policy for each one (``predict``). A chunked policy answers from
the chunk it planned last and plans a new one only when that chunk is spent, or when the env's episode restarted (a
chunk never runs on into the next episode). :class:`PendingChunks` is what has to be remembered between the calls:
the rest of each env's chunk. :func:`act_in_chunks` is one step of acting on it, and :class:`OpenLoop` the
``predict`` of an actor built on that, used by the model's policy (:meth:`sb3_expo.policies.ExpoPolicy.predict`) and
by the base policy alone (:class:`sb3_expo.evaluation.BasePolicyActor`).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.utils import is_vectorized_observation

Observation = np.ndarray | dict[str, np.ndarray]


@dataclass
class PendingChunks:
    """
    The planned chunk of every env and how much of it was executed.

    :param actions: ``(n_envs, h, *action_shape)``, in the env's action units
    :param next_step: ``(n_envs,)``, the index of the next action to execute; ``h``: the chunk is spent
    """

    actions: np.ndarray
    next_step: np.ndarray

    @classmethod
    def spent(cls, n_envs: int, horizon: int, action_shape: tuple[int, ...]) -> "PendingChunks":
        """Nothing planned yet: every env plans at its next step."""
        return cls(np.zeros((n_envs, horizon, *action_shape), dtype=np.float32), np.full(n_envs, horizon))

    @property
    def horizon(self) -> int:
        return self.actions.shape[1]

    def restart(self, envs: np.ndarray) -> None:
        """The episodes of ``envs`` (a boolean mask) restarted: their chunks are dropped, they plan anew."""
        self.next_step[np.asarray(envs, dtype=bool)] = self.horizon

    def pop(self) -> np.ndarray:
        """The next action of every env ``(n_envs, *action_shape)``; each chunk moves on by one step."""
        actions = self.actions[np.arange(len(self.next_step)), self.next_step]
        self.next_step += 1
        return actions


def as_batch(observation: Observation, observation_space: spaces.Space) -> tuple[Observation, bool]:
    """The observation with a leading batch axis, and whether it had one (SB3's ``predict`` convention)."""
    if is_vectorized_observation(observation, observation_space):
        return observation, True
    if isinstance(observation, dict):
        return {key: np.expand_dims(value, 0) for key, value in observation.items()}, False
    return np.expand_dims(np.asarray(observation), 0), False


def rows_of(observation: Observation, rows: np.ndarray) -> Observation:
    if isinstance(observation, dict):
        return {key: value[rows] for key, value in observation.items()}
    return observation[rows]


def act_in_chunks(
    plan: Callable[[Observation], np.ndarray],
    observation: Observation,
    observation_space: spaces.Space,
    pending: PendingChunks | None,
    horizon: int,
    action_shape: tuple[int, ...],
    episode_start: np.ndarray | None = None,
) -> tuple[np.ndarray, PendingChunks]:
    """
    One action per env from its pending chunk; envs whose chunk is spent or whose episode starts plan a new one.

    :param plan: observations of the envs that plan ``(m, ...)`` -> their chunks' ``m·h`` actions in env units (an
        SB3-style ``predict`` of a policy whose action is a chunk)
    :param observation: one observation, or one per env
    :param pending: the chunks carried from the previous call (None, or another number of envs: none)
    :param episode_start: per env, whether its episode starts with this observation (SB3's ``episode_start``)
    :return: the actions (batched as ``observation`` is) and the pending chunks to carry to the next call
    """
    batch, vectorized = as_batch(observation, observation_space)
    n_envs = len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch)
    if pending is None or len(pending.next_step) != n_envs or pending.horizon != horizon:
        pending = PendingChunks.spent(n_envs, horizon, action_shape)
    if episode_start is not None:
        pending.restart(np.asarray(episode_start).reshape(n_envs))
    planning = pending.next_step >= horizon
    if planning.any():
        pending.actions[planning] = np.asarray(plan(rows_of(batch, planning))).reshape(-1, horizon, *action_shape)
        pending.next_step[planning] = 0
    actions = pending.pop()
    return (actions if vectorized else actions[0]), pending


class OpenLoop:
    """
    An actor's open-loop execution of its chunks. The rollout's pending chunks are kept here; a caller that passes a
    ``state`` or an ``episode_start`` to ``predict`` (SB3's ``evaluate_policy``, rl-zoo's ``enjoy``) carries its own in
    ``state``, as a recurrent policy's memory, so an evaluation never consumes the training envs' chunks.

    :param horizon: h, actions per chunk
    :param observation_space: the actor's observation space (to tell one observation from a batch)
    :param action_shape: the shape of one env action
    """

    def __init__(self, horizon: int, observation_space: spaces.Space, action_shape: tuple[int, ...]):
        self.horizon, self.observation_space, self.action_shape = horizon, observation_space, action_shape
        self.pending: PendingChunks | None = None

    def predict(
        self,
        plan: Callable[[Observation], np.ndarray],
        observation: Observation,
        state: PendingChunks | None = None,
        episode_start: np.ndarray | None = None,
    ) -> tuple[np.ndarray, PendingChunks | None]:
        """SB3's ``predict`` on the pending chunks (:func:`act_in_chunks`): the actions, and the carried ``state``."""
        carried = state is not None or episode_start is not None
        actions, pending = act_in_chunks(
            plan, observation, self.observation_space, state if carried else self.pending, self.horizon,
            self.action_shape, episode_start,
        )  # fmt: skip
        if not carried:
            self.pending = pending
        return actions, pending if carried else None

    def end_episodes(self, dones: np.ndarray) -> None:
        """The episodes of the envs where ``dones`` ended: their chunks are not continued into the next one."""
        if self.pending is not None:
            self.pending.restart(dones)
