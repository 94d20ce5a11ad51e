"""Offline transitions from a robomimic / MimicGen low-dimensional HDF5 file, read with h5py."""

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from sb3_expo.data.d4rl import check_lengths, open_hdf5, read_array
from sb3_expo.data.transitions import OfflineTransitions


def _demo_names(data: Any, where: str) -> list[str]:
    """The file's demos in numerical order (``demo_2`` before ``demo_10``), as robomimic orders them."""
    names = [name for name in data.keys() if re.fullmatch(r"demo_\d+", name)]
    if not names:
        raise ValueError(f"{where}: 'data' holds no demo_<i> groups (found: {sorted(data.keys())})")
    return sorted(names, key=lambda name: int(name.split("_")[1]))


def _filtered_demo_names(file: Any, filter_key: str, where: str) -> list[str]:
    """
    The demos robomimic's ``mask/<filter_key>`` lists (e.g. ``"train"``, ``"valid"``, ``"20_percent"``),
    the way robomimic users select a subset of a file, in numerical order.
    """
    available = sorted(file["mask"].keys()) if "mask" in file else []
    if filter_key not in available:
        found = ", ".join(available) if available else "none (the file has no 'mask' group)"
        raise ValueError(f"{where} has no filter key {filter_key!r} (mask/{filter_key}); its filter keys: {found}")
    listed = np.asarray(file["mask"][filter_key][()]).ravel()
    names = [name.decode() if isinstance(name, bytes) else str(name) for name in listed]
    missing = [name for name in names if name not in file["data"]]
    if missing:
        raise ValueError(f"{where}: mask/{filter_key} lists demos that 'data' does not hold: {missing}")
    return sorted(names, key=lambda name: int(name.split("_")[1]))


def _default_obs_keys(demo: Any, where: str) -> list[str]:
    """Every low-dimensional key of a demo's observations, sorted; image keys (several dims per step) are left out."""
    if "obs" not in demo:
        raise ValueError(f"{where} has no 'obs' group (found: {sorted(demo.keys())})")
    keys = sorted(key for key in demo["obs"].keys() if getattr(demo["obs"][key], "ndim", 0) in (1, 2))
    if not keys:
        raise ValueError(f"{where}: no low-dimensional observation keys (found: {sorted(demo['obs'].keys())})")
    return keys


def _flat_observations(group: Any, obs_keys: Sequence[str], where: str) -> np.ndarray:
    """The keys' arrays flattened per step and concatenated in ``obs_keys`` order: ``(T, sum of sizes)``."""
    arrays = {key: read_array(group, key, where) for key in obs_keys}
    check_lengths(arrays, where)
    return np.concatenate([array.reshape(len(array), -1) for array in arrays.values()], axis=1)


def _demo_transitions(demo: Any, obs_keys: Sequence[str], where: str) -> dict[str, np.ndarray]:
    arrays = {key: read_array(demo, key, where) for key in ("actions", "rewards", "dones")}
    if "obs" not in demo:
        raise ValueError(f"{where} has no 'obs' group (found: {sorted(demo.keys())})")
    arrays["observations"] = _flat_observations(demo["obs"], obs_keys, f"{where}/obs")
    n_steps = check_lengths(arrays, where)
    terminals = arrays["dones"].reshape(n_steps).astype(bool)
    if "next_obs" in demo:
        next_observations = _flat_observations(demo["next_obs"], obs_keys, f"{where}/next_obs")
        check_lengths({"obs": arrays["observations"], "next_obs": next_observations}, where)
        keep = np.ones(n_steps, dtype=bool)
    else:
        # Files extracted with --exclude-next-obs: the next observation is the next step's, and the last
        # step keeps its row only if it is terminal (then its next observation is masked out).
        next_observations = np.concatenate([arrays["observations"][1:], arrays["observations"][-1:]])
        keep = np.ones(n_steps, dtype=bool)
        keep[-1] = terminals[-1]
    return {
        "episode_ends": np.arange(int(keep.sum())) == keep.sum() - 1,
        "observations": arrays["observations"][keep],
        "actions": arrays["actions"].reshape(n_steps, -1)[keep],
        "rewards": arrays["rewards"].reshape(n_steps)[keep],
        "next_observations": next_observations[keep],
        "terminals": terminals[keep],
    }


def load_robomimic_hdf5(
    path: str | os.PathLike, obs_keys: Sequence[str] | None = None, filter_key: str | None = None
) -> OfflineTransitions:
    """
    Load a robomimic or MimicGen low-dimensional HDF5 file (``data/demo_<i>/{obs,next_obs}/<key>``,
    ``actions``, ``rewards``, ``dones``); demos are read in numerical order.

    The observation is flat: the arrays of ``obs_keys``, each flattened per step, concatenated in the
    order of ``obs_keys``. Build the environment's observation the same way: same keys, same order.

    ``dones`` is used as the terminal flag. robomimic writes it at the last step of each demo, where the
    task is completed (only successful demos are kept), and/or at every step that reaches a success
    state, depending on the extraction's ``--done_mode`` (0: success states, 1: demo ends, 2: both).
    Files without ``next_obs`` (extracted with ``--exclude-next-obs``) use the next step's observation
    within the demo, dropping a demo's last step unless it is terminal. Each demo's last row is an
    episode end (``episode_ends``), and so is every ``done`` row (a terminal).

    :param path: the ``.hdf5`` file
    :param obs_keys: observation keys, in the order they are concatenated. Default: every key of the first
        demo's ``obs`` with one dimension per step (image keys are left out), in sorted order.
    :param filter_key: read only the demos listed under ``mask/<filter_key>`` (robomimic's way to
        select e.g. the ``"train"`` split); default: every demo
    :return: the transitions (Box observations)
    :raises FileNotFoundError: the file does not exist
    :raises ValueError: the file is not HDF5, has no demos, lacks a key or the filter key (the message
        lists the file's filter keys), or a demo's arrays have inconsistent lengths
    """
    where = f"robomimic file {os.fspath(path)!r}"
    with open_hdf5(path) as file:
        if "data" not in file:
            raise ValueError(f"{where} has no 'data' group (found: {sorted(file.keys())})")
        names = _demo_names(file["data"], where) if filter_key is None else _filtered_demo_names(file, filter_key, where)
        if obs_keys is None:
            obs_keys = _default_obs_keys(file["data"][names[0]], f"{where}: data/{names[0]}")
        demos = [_demo_transitions(file["data"][name], list(obs_keys), f"{where}: data/{name}") for name in names]
    return OfflineTransitions(**{field: np.concatenate([demo[field] for demo in demos]) for field in demos[0]})
