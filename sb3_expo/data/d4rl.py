"""Offline transitions from a legacy D4RL HDF5 file, read with h5py (the ``d4rl`` package is not needed)."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from sb3_expo.data.transitions import OfflineTransitions, import_offline_dependency, infer_episode_ends

D4RL_REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")


@contextmanager
def open_hdf5(path: str | os.PathLike) -> Iterator[Any]:
    """
    Open an HDF5 file for reading, turning h5py's low-level errors into clear ones.

    :param path: the file
    :raises FileNotFoundError: the file does not exist
    :raises ValueError: the file is not a readable HDF5 file (empty, truncated, another format)
    """
    h5py = import_offline_dependency("h5py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No offline dataset file at {os.fspath(path)!r}")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(
            f"{os.fspath(path)!r} is not a readable HDF5 file (empty, truncated or another format): {error}"
        ) from error
    with file:
        yield file


def read_array(group: Any, key: str, where: str) -> np.ndarray:
    """
    :param group: an open h5py group
    :param key: the dataset's name in the group
    :param where: the group's description for the error message
    :raises ValueError: the key is missing or is not an array
    """
    if key not in group:
        raise ValueError(f"{where} has no '{key}' (found: {sorted(group.keys())})")
    try:
        return np.asarray(group[key][()])
    except (OSError, TypeError, AttributeError) as error:
        raise ValueError(f"{where}: '{key}' cannot be read as an array: {error}") from error


def check_lengths(arrays: dict[str, np.ndarray], where: str) -> int:
    """
    :param arrays: arrays that must have one row per step
    :param where: their source, for the error message
    :return: the common number of rows
    :raises ValueError: the lengths differ, or there are no rows
    """
    lengths = {key: len(value) if value.ndim else 0 for key, value in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{where}: arrays have inconsistent lengths {lengths}")
    n_rows = next(iter(lengths.values()))
    if n_rows == 0:
        raise ValueError(f"{where} holds no steps")
    return n_rows


def _kept_rows(terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """
    Rows whose next observation is ``observations[i + 1]`` of the same episode, or does not matter.

    A step that ended its episode by timeout has no stored next observation (row ``i + 1`` starts the
    next episode): drop it. A terminal step keeps its row, since its next observation is masked out.
    The last row has no row after it at all: drop it, as D4RL's ``qlearning_dataset`` does.
    """
    keep = ~(timeouts & ~terminals)
    keep[-1] = False
    return keep


def _episode_ends(arrays: dict[str, np.ndarray], keep: np.ndarray, next_observations: np.ndarray) -> np.ndarray:
    """
    The kept rows' episode ends: a row flagged ``terminals`` or ``timeouts``, a row whose successor was dropped
    (the last kept step of an episode that ended by timeout, or the file's last kept row), and, in files with
    ``next_observations``, a row whose next observation is not the next row's (a boundary the file left unflagged:
    a chunk must not join two episodes, while a needless end only shortens a chunk).
    """
    ends = arrays["terminals"].reshape(-1).astype(bool)
    if "timeouts" in arrays:
        ends = ends | arrays["timeouts"].reshape(-1).astype(bool)
    successor_dropped = ~np.concatenate([keep[1:], [False]])
    ends = (ends | successor_dropped)[keep]
    if "next_observations" in arrays:
        ends = ends | infer_episode_ends(arrays["observations"], next_observations)
    return ends


def _read_arrays(path: str | os.PathLike, where: str) -> dict[str, np.ndarray]:
    """The file's arrays this loader uses, of equal lengths; ``timeouts`` or ``next_observations`` must be there."""
    with open_hdf5(path) as file:
        arrays = {key: read_array(file, key, where) for key in D4RL_REQUIRED_KEYS}
        if "next_observations" in file:
            arrays["next_observations"] = read_array(file, "next_observations", where)
        elif "timeouts" not in file:
            raise ValueError(
                f"{where} has neither 'timeouts' nor 'next_observations', so episode boundaries are unknown "
                f"(found: {sorted(file.keys())})"
            )
        if "timeouts" in file:
            arrays["timeouts"] = read_array(file, "timeouts", where)
    check_lengths(arrays, where)
    return arrays


def load_d4rl_hdf5(path: str | os.PathLike) -> OfflineTransitions:
    """
    Load a legacy D4RL HDF5 file (``observations``, ``actions``, ``rewards``, ``terminals``,
    ``timeouts``, optionally ``next_observations``; ``infos/*`` and other keys are ignored).

    An episode ends at every row where ``terminals`` or ``timeouts`` is 1. With ``next_observations``
    in the file every row is one transition. Without it the next observation is ``observations[i + 1]``
    and no pair crosses an episode boundary: the last step of an episode that ended by timeout is
    dropped (its next observation was never stored), a terminal step is kept (its next observation is
    masked by ``1 - terminal``), and the file's last row is dropped. Timeouts are never terminals.
    ``episode_ends`` marks each episode's last kept row (see :func:`_episode_ends`).

    Note: AntMaze files flag ``terminals`` at the goal while the recorded trajectory goes on; such rows
    end an episode here too, which changes nothing, since the next row is still a valid next observation.

    :param path: the ``.hdf5`` file
    :return: the transitions (Box observations)
    :raises FileNotFoundError: the file does not exist
    :raises ValueError: the file is not HDF5, lacks a required key, or its arrays have inconsistent lengths
    """
    where = f"D4RL file {os.fspath(path)!r}"
    arrays = _read_arrays(path, where)
    observations, terminals = arrays["observations"], arrays["terminals"].reshape(-1).astype(bool)
    if "next_observations" in arrays:
        keep = np.ones(len(observations), dtype=bool)
        next_observations = arrays["next_observations"]
    else:
        keep = _kept_rows(terminals, arrays["timeouts"].reshape(-1).astype(bool))
        next_observations = observations[1:][keep[:-1]]  # the last row is never kept
    if not keep.any():
        raise ValueError(f"{where} holds no complete transition")
    return OfflineTransitions(
        observations=observations[keep],
        actions=arrays["actions"].reshape(len(observations), -1)[keep],
        rewards=arrays["rewards"].reshape(-1)[keep],
        next_observations=next_observations,
        terminals=terminals[keep],
        episode_ends=_episode_ends(arrays, keep, next_observations),
    )
