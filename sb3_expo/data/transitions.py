"""One in-memory set of offline transitions, the checks it must pass before training, and reward transforms."""

import dataclasses
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
from gymnasium import spaces

from sb3_expo.optional import import_optional

# An observation array (n, ...) for Box spaces, or one array per key for Dict spaces.
Observations = np.ndarray | dict[str, np.ndarray]
ArrayLike = TypeVar("ArrayLike")

# Actions may exceed the bounds by this much (float32 round-off of data stored in other units).
ACTION_BOUND_TOLERANCE = 1e-4


def import_offline_dependency(name: str) -> ModuleType:
    """Import a package of the ``offline`` extra (``minari``, ``h5py``), or explain how to install it."""
    return import_optional(name, "offline")


def map_observations(function: Callable[..., Any], *observations: Any) -> Any:
    """
    ``function`` applied to Box observations, or key by key to Dict observations, so that code handling
    observations is written once for both layouts (SB3 keeps a Dict space's observations as one array
    per key, and so do the loaders and buffers here).

    :param function: takes one array per argument in ``observations`` and returns one value
    :param observations: arrays, or dicts of arrays having (at least) the keys of the first
    :return: ``function(*observations)``, or a dict of its value per key
    """
    if isinstance(observations[0], dict):
        return {key: function(*(obs[key] for obs in observations)) for key in observations[0]}
    return function(*observations)


def _named_arrays(field: str, value: Observations) -> dict[str, np.ndarray]:
    """One observation field's arrays by a readable name: ``observations``, or ``observations['key']`` per key."""
    if isinstance(value, dict):
        return {f"{field}[{key!r}]": array for key, array in value.items()}
    return {field: value}


@dataclasses.dataclass(frozen=True, eq=False)
class OfflineTransitions:
    """
    Offline transitions ``(s, a, r, s', terminal)`` as float32 arrays with one row per transition.

    Rows are independent: each carries its own next observation, so a one-step TD target needs nothing
    from a row's neighbour. Action chunks (:func:`sb3_expo.chunks.chunk_offline`) do: they join a row to
    the rows after it, and ``episode_ends`` says where that must stop. Arrays are converted to float32
    on creation, ``episode_ends`` to bool.

    :param observations: ``(n, *obs_shape)``, or a dict of such arrays for a Dict observation space
    :param actions: ``(n, action_dim)``, in the environment's action units (see :func:`scale_actions`)
    :param rewards: ``(n,)``, as stored in the dataset (see :class:`RewardTransform`)
    :param next_observations: same layout as ``observations``
    :param terminals: ``(n,)``, 1.0 only where the episode truly terminated after this step. A time
        limit or truncation is *not* a terminal: the TD target keeps bootstrapping through it.
    :param recorded_env_id: the id of the env the data was recorded on, where the dataset says (Minari does): EXPO
        warns when it names another task than the model's env
    :param episode_ends: ``(n,)`` bool, True on the last row of each episode, whether it terminated or was
        truncated; rows of one episode are consecutive, and row ``i + 1`` continues row ``i``'s episode
        unless ``episode_ends[i]``. The loaders fill it from what they read. When None (arrays built by
        hand) it is inferred: a row ends its episode where its next observation is not the next row's
        observation (:func:`infer_episode_ends`). Whatever is given, every terminal row and the last row
        are episode ends.
    """

    observations: Observations
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: Observations
    terminals: np.ndarray
    recorded_env_id: str | None = None
    episode_ends: np.ndarray | None = None

    def __post_init__(self) -> None:
        for field in ("observations", "next_observations"):
            float32 = map_observations(lambda array: np.asarray(array, dtype=np.float32), getattr(self, field))
            object.__setattr__(self, field, float32)
        for field in ("actions", "rewards", "terminals"):
            object.__setattr__(self, field, np.asarray(getattr(self, field), dtype=np.float32))
        if self.episode_ends is not None:
            object.__setattr__(self, "episode_ends", np.array(self.episode_ends, dtype=bool).reshape(-1))
        self._check_layout()
        object.__setattr__(self, "episode_ends", self._complete_episode_ends())

    def _complete_episode_ends(self) -> np.ndarray:
        """The given or inferred episode ends, plus every terminal row and the last row (nothing follows it)."""
        given = self.episode_ends
        ends = infer_episode_ends(self.observations, self.next_observations) if given is None else given.copy()
        ends[-1:] = True
        return ends | (self.terminals != 0)

    def _check_layout(self) -> None:
        if isinstance(self.observations, dict) != isinstance(self.next_observations, dict):
            raise ValueError("observations and next_observations must both be arrays or both be dicts")
        if isinstance(self.observations, dict) and set(self.observations) != set(self.next_observations):
            raise ValueError(
                f"observations and next_observations have different keys: "
                f"{sorted(self.observations)} != {sorted(self.next_observations)}"
            )
        if self.actions.ndim != 2 or self.rewards.ndim != 1 or self.terminals.ndim != 1:
            raise ValueError(
                f"actions must be (n, d), rewards and terminals (n,); got shapes {self.actions.shape}, "
                f"{self.rewards.shape} and {self.terminals.shape}"
            )
        lengths = {name: len(array) for name, array in _fields(self).items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Offline transitions have inconsistent lengths: {lengths}")

    def __len__(self) -> int:
        return len(self.rewards)


def _fields(transitions: OfflineTransitions) -> dict[str, np.ndarray]:
    """Every array of the transitions by a readable name (dict observations as ``observations['key']``)."""
    ends = {} if transitions.episode_ends is None else {"episode_ends": transitions.episode_ends}
    return {
        **_named_arrays("observations", transitions.observations),
        **_named_arrays("next_observations", transitions.next_observations),
        "actions": transitions.actions,
        "rewards": transitions.rewards,
        "terminals": transitions.terminals,
        **ends,
    }


def infer_episode_ends(observations: Observations, next_observations: Observations) -> np.ndarray:
    """
    Episode ends of rows whose loader did not say: row ``i`` ends an episode where its next observation
    differs from row ``i + 1``'s observation (any element, any key), and the last row ends one.

    An unflagged boundary is caught as long as the next episode does not start exactly where the previous
    one stopped; a false boundary (an observation stored twice with round-off) only shortens a chunk, which
    stays a correct backup, while a missed one would join two episodes. Hence the strict comparison.

    :return: bool ``(n,)``
    """
    if isinstance(observations, dict):
        pairs = [(observations[key], next_observations[key]) for key in observations]  # type: ignore[index]
    else:
        pairs = [(observations, next_observations)]
    n_rows = len(pairs[0][0])
    ends = np.zeros(n_rows, dtype=bool)
    ends[-1:] = True
    for obs, next_obs in pairs if n_rows > 1 else []:
        ends[:-1] |= np.any((next_obs[:-1] != obs[1:]).reshape(n_rows - 1, -1), axis=1)
    return ends


def _check_observations(field: str, value: Observations, observation_space: spaces.Space) -> None:
    if isinstance(observation_space, spaces.Dict):
        if not isinstance(value, dict):
            raise ValueError(f"{field}: the observation space is a Dict but the data is one array of shape {value.shape}")
        if set(value) != set(observation_space.spaces):
            raise ValueError(
                f"{field}: the data has keys {sorted(value)} but the observation space has keys "
                f"{sorted(observation_space.spaces)}"
            )
        for key, subspace in observation_space.spaces.items():
            _check_observations(f"{field}[{key!r}]", value[key], subspace)
        return
    if isinstance(value, dict):
        raise ValueError(
            f"{field}: the data is a dict with keys {sorted(value)} but the observation space is {observation_space}"
        )
    if value.shape[1:] != observation_space.shape:
        raise ValueError(
            f"{field}: the data has shape {value.shape[1:]} per step but the observation space has shape "
            f"{observation_space.shape}"
        )


def _check_action_bounds(actions: np.ndarray, action_space: spaces.Box) -> None:
    outside = (actions < action_space.low - ACTION_BOUND_TOLERANCE) | (actions > action_space.high + ACTION_BOUND_TOLERANCE)
    n_rows = int(outside.any(axis=1).sum())
    if n_rows:
        raise ValueError(
            f"actions: {n_rows} of {len(actions)} rows lie outside the action space bounds "
            f"[{action_space.low}, {action_space.high}] (data range [{actions.min(axis=0)}, {actions.max(axis=0)}]). "
            "Is the dataset recorded for another version of the environment, or with normalised actions?"
        )


def validate_against_env(transitions: OfflineTransitions, observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """
    Check that offline data fits the environment it will be mixed with, before any training: a wrong
    dataset otherwise fails late inside the replay buffer, or silently trains on garbage.

    Checks, in order: observation shapes (and dict keys), action shape, finiteness of every array,
    and that actions lie inside the action bounds (up to ``1e-4``).

    :param transitions: the offline data
    :param observation_space: the environment's observation space (Box, or Dict of Box)
    :param action_space: the environment's action space (Box)
    :raises ValueError: naming the field and both shapes, or the field and how many rows are bad
    """
    if not isinstance(action_space, spaces.Box):
        raise ValueError(f"actions: offline data needs a Box action space, got {action_space}")
    _check_observations("observations", transitions.observations, observation_space)
    _check_observations("next_observations", transitions.next_observations, observation_space)
    if transitions.actions.shape[1:] != action_space.shape:
        raise ValueError(
            f"actions: the data has shape {transitions.actions.shape[1:]} per step but the action space has "
            f"shape {action_space.shape}"
        )
    for field, array in _fields(transitions).items():
        bad_rows = int((~np.isfinite(array)).reshape(len(array), -1).any(axis=1).sum())
        if bad_rows:
            raise ValueError(f"{field}: {bad_rows} of {len(array)} rows contain NaN or inf")
    _check_action_bounds(transitions.actions, action_space)


def scale_actions(actions: np.ndarray, action_space: spaces.Box) -> np.ndarray:
    """
    Map actions from the environment's bounds to [-1, 1], exactly as SB3's ``BasePolicy.scale_action``
    does, because the policy and the replay buffer hold actions in that range (``squash_output=True``).
    Not clipped: check bounds first with :func:`validate_against_env`.

    :param actions: ``(n, action_dim)`` in environment units
    :param action_space: the environment's action space (finite bounds)
    :return: float32 actions in [-1, 1]
    """
    low, high = action_space.low, action_space.high
    return (2.0 * ((actions - low) / (high - low)) - 1.0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class RewardTransform:
    """
    Affine reward transform ``r * scale + shift``, applied to every sampled reward, offline and online
    alike, so both halves of a batch share one reward scale.

    The paper's AntMaze setting is ``RewardTransform(shift=-1.0)`` (``r - 1``: -1 per step, 0 at the goal),
    which makes the sparse goal reward informative to a bootstrapped critic (docs/algorithm.md).

    :param scale: multiplies the reward
    :param shift: added after scaling
    """

    scale: float = 1.0
    shift: float = 0.0

    def __call__(self, rewards: ArrayLike) -> ArrayLike:
        """
        :param rewards: a numpy array or torch tensor of rewards
        :return: the transformed rewards, of the same type
        """
        if self.is_identity:
            return rewards
        return rewards * self.scale + self.shift  # type: ignore[operator]

    @property
    def is_identity(self) -> bool:
        """Whether the transform leaves rewards unchanged."""
        return self.scale == 1.0 and self.shift == 0.0
