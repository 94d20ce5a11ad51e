"""Offline transitions from a Minari dataset (https://minari.farama.org), by id or as a loaded dataset."""

import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces

from sb3_expo.data.transitions import OfflineTransitions, import_offline_dependency, map_observations


class DatasetNotFoundError(FileNotFoundError):
    """An offline dataset is not available locally (and downloading it was not requested)."""


# Datasets under this namespace are built on the user's machine (``python -m sb3_expo.tasks``), never downloaded.
LOCAL_NAMESPACE = "sb3_expo/"


def _missing_dataset_message(dataset_id: str, datasets_path: str) -> str:
    if dataset_id.startswith(LOCAL_NAMESPACE):
        how = f"It is built locally, not downloaded: build it once with\n    python -m sb3_expo.tasks {dataset_id}\n"
    else:
        how = f"Fetch it once with\n    minari download {dataset_id}\nor pass download=True. "
    return (
        f"Minari dataset '{dataset_id}' is not available locally (looked in {datasets_path}). {how}"
        f"Minari keeps datasets under $MINARI_DATASETS_PATH (default ~/.minari/datasets): "
        f"set that environment variable if the dataset lives elsewhere."
    )


def load_minari_dataset(dataset_id: str, download: bool = False) -> Any:
    """
    ``minari.load_dataset``, the one place this package opens a Minari dataset by id, so that a missing
    dataset always fails with the same error: the ``minari download`` command, or for this package's
    own datasets (ids under ``sb3_expo/``) the command that builds them.

    :param dataset_id: e.g. ``"D4RL/antmaze/large-diverse-v1"``
    :param download: download the dataset if it is not available locally (needs network access)
    :return: the ``minari.MinariDataset``
    :raises DatasetNotFoundError: the dataset is not available locally and ``download`` is False
    :raises ImportError: Minari is not installed (the message names the extra)
    """
    minari = import_offline_dependency("minari")
    from minari.storage.datasets_root_dir import get_dataset_path

    try:
        return minari.load_dataset(dataset_id)
    except FileNotFoundError as error:
        if not download:
            raise DatasetNotFoundError(_missing_dataset_message(dataset_id, str(get_dataset_path()))) from error
    minari.download_dataset(dataset_id)
    return minari.load_dataset(dataset_id)


def load_or_build(dataset_id: str, build: Callable[[], Any], overwrite: bool = False, n_episodes: int | None = None) -> Any:
    """
    The local Minari dataset ``dataset_id`` if it exists, else what ``build()`` writes: how every
    dataset built on this machine is reused rather than recorded twice.

    :param dataset_id: the Minari id
    :param build: writes the dataset and returns it (called only when it is missing or ``overwrite``)
    :param overwrite: delete an existing dataset and build it again
    :param n_episodes: how many episodes the caller asked for: an existing dataset with another count
        is still reused, with a warning that says how to rebuild it
    :return: the ``minari.MinariDataset``
    """
    try:
        dataset = load_minari_dataset(dataset_id)
    except DatasetNotFoundError:
        return build()
    if overwrite:
        import_offline_dependency("minari").delete_dataset(dataset_id)
        return build()
    if n_episodes is not None and dataset.total_episodes != n_episodes:
        warnings.warn(
            f"Reusing the Minari dataset '{dataset_id}' with {dataset.total_episodes} episodes although "
            f"{n_episodes} were asked for: pass overwrite=True to rebuild it.",
            stacklevel=3,
        )
    return dataset


def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space, dataset_id: str) -> None:
    if not isinstance(action_space, spaces.Box):
        raise ValueError(f"Minari dataset '{dataset_id}': offline data needs a Box action space, got {action_space}")
    flat_spaces = observation_space.spaces.values() if isinstance(observation_space, spaces.Dict) else [observation_space]
    if not all(isinstance(space, spaces.Box) for space in flat_spaces):
        raise ValueError(
            f"Minari dataset '{dataset_id}': observations must be a Box or a Dict of Box spaces (as SB3's "
            f"MultiInputPolicy), got {observation_space}"
        )


def _checked_length(observations: np.ndarray, n_steps: int) -> np.ndarray:
    observations = np.asarray(observations)
    if len(observations) != n_steps + 1:
        raise ValueError(f"An episode with {n_steps} steps has {len(observations)} observations instead of {n_steps + 1}")
    return observations


def _split(observations: Any, n_steps: int) -> tuple[Any, Any]:
    """Split an episode's ``T + 1`` observations into ``obs[:T]`` and ``obs[1:]``, per key for Dict observations."""
    checked = map_observations(functools.partial(_checked_length, n_steps=n_steps), observations)
    return map_observations(lambda array: array[:-1], checked), map_observations(lambda array: array[1:], checked)


def _concatenate(chunks: list[Any]) -> Any:
    return map_observations(lambda *arrays: np.concatenate(arrays), *chunks)


def load_minari(dataset_id_or_dataset: Any, download: bool = False) -> OfflineTransitions:
    """
    Load every episode of a Minari dataset as offline transitions.

    An episode with ``T`` steps stores ``T + 1`` observations (the last one after the final step, also
    on truncation), so it gives exactly ``T`` transitions ``(obs[t], act[t], rew[t], obs[t + 1],
    terminations[t])``, and no transition ever pairs one episode's last observation with the next
    episode's first. Truncations are not terminals (bootstrapping continues through them). Each
    episode's last row is an episode end (``episode_ends``), however it ended.

    :param dataset_id_or_dataset: a dataset id such as ``"D4RL/antmaze/large-diverse-v1"``, looked up
        under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``), or a loaded ``minari.MinariDataset``
        (e.g. after ``filter_episodes``)
    :param download: download the dataset if it is not available locally (needs network access)
    :return: the transitions; observations are a dict of arrays for a Dict observation space
    :raises DatasetNotFoundError: the dataset is not available locally and ``download`` is False
        (the message gives the ``minari download`` command)
    :raises ImportError: Minari is not installed
    """
    if isinstance(dataset_id_or_dataset, str):
        dataset = load_minari_dataset(dataset_id_or_dataset, download)
    else:
        dataset = dataset_id_or_dataset
    _check_spaces(dataset.observation_space, dataset.action_space, dataset.id)

    observations, next_observations, actions, rewards, terminals, ends = [], [], [], [], [], []
    for episode in dataset.iterate_episodes():
        n_steps = len(episode.rewards)
        if n_steps == 0:
            continue
        obs, next_obs = _split(episode.observations, n_steps)
        observations.append(obs)
        next_observations.append(next_obs)
        actions.append(np.asarray(episode.actions).reshape(n_steps, -1))
        rewards.append(np.asarray(episode.rewards).reshape(n_steps))
        terminals.append(np.asarray(episode.terminations).reshape(n_steps))
        ends.append(np.arange(n_steps) == n_steps - 1)
    if not rewards:
        raise ValueError(f"Minari dataset '{dataset.id}' has no transitions")
    return OfflineTransitions(
        observations=_concatenate(observations),
        actions=np.concatenate(actions),
        rewards=np.concatenate(rewards),
        next_observations=_concatenate(next_observations),
        terminals=np.concatenate(terminals),
        recorded_env_id=getattr(getattr(dataset.spec, "env_spec", None), "id", None),
        episode_ends=np.concatenate(ends),
    )
