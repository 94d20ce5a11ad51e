"""
The paper's task families as Gymnasium ids, registered when this package is imported, and the offline
datasets that are built locally rather than downloaded. One module per family holds its environment,
its wrappers and its dataset builder:

- :mod:`~sb3_expo.tasks.antmaze`: ``sb3_expo/AntMaze-{medium,large}-{play,diverse}-v1``, Minari
  ``D4RL/antmaze/<maze>-<kind>-v1``'s evaluation maze; Dict observations (``MultiInputPolicy``).
- :mod:`~sb3_expo.tasks.adroit`: ``sb3_expo/AdroitHand{Pen,Door,Relocate}Binary-v1``, binary reward;
  offline data ``D4RL/<task>/cloned-v2`` relabelled into the local dataset ``sb3_expo/<task>-binary-cloned-v2``.
- :mod:`~sb3_expo.tasks.robomimic`: ``sb3_expo/Robomimic{Lift,Can,Square}-v0`` and
  ``sb3_expo/MimicGen{Threading,Stack}-v0``, the robosuite env of a robomimic-format low-dim ``.hdf5``
  file whose path the user gives.
- :mod:`~sb3_expo.tasks.pointmaze`: ``sb3_expo/PointMazeUMazeFixed-v0``, the demo task, with offline data
  built locally (``sb3_expo/pointmaze-umaze-mixed-v1``), and ``sb3_expo/PointMazeLargeFixed-v0``, the
  large maze with one start and one goal 15 cells apart (``sb3_expo/pointmaze-large-noisy-v0``), and
  ``sb3_expo/PointMazeMediumFixed-v0``, the medium maze with a 10-move path (``sb3_expo/pointmaze-medium-noisy-v0``).
- :mod:`~sb3_expo.tasks.fetchpush`: ``sb3_expo/FetchPushTerminal-v0``, FetchPush with its sparse reward,
  ended at success, with mixed scripted data built locally (``sb3_expo/fetchpush-noisy-v0``); Dict observations.
- :mod:`~sb3_expo.tasks.pickandplace`: ``sb3_expo/FetchPickAndPlaceTerminal-v0``, FetchPickAndPlace with its
  sparse reward, ended at success, with mixed scripted grasps built locally (``sb3_expo/pickandplace-noisy-v0``).
- :mod:`~sb3_expo.tasks.lift`: ``sb3_expo/LiftSparse-v0``, robosuite's Lift with its sparse 0/1 reward, ended at
  success, with mixed scripted data recorded locally as a robomimic-format file (``lift_dataset_path()``).

Every task reports ``info["is_success"]``, so SB3 logs ``rollout/success_rate`` and ``EvalCallback``
``eval/success_rate``. Simulators are imported only when an env is created: Gymnasium-Robotics and
MuJoCo (``robotics`` extra), robosuite (``robomimic`` extra) and MimicGen (installed from its source
repository, :data:`~sb3_expo.tasks.robomimic.MIMICGEN_INSTALL`).

``python -m sb3_expo.tasks DATASET_ID`` builds one of :data:`LOCAL_DATASETS` (:mod:`sb3_expo.tasks.cli`).
"""

from collections.abc import Callable
from typing import Any

import gymnasium as gym

from sb3_expo.data.minari import load_or_build
from sb3_expo.tasks import adroit, antmaze, fetchpush, lift, pickandplace, pointmaze, robomimic
from sb3_expo.tasks.adroit import (
    ADROIT_BINARY_TASKS,
    adroit_binary_dataset_id,
    adroit_binary_env_id,
    build_adroit_binary_dataset,
    make_adroit_binary_env,
)
from sb3_expo.tasks.antmaze import ANTMAZE_TASKS, make_antmaze_env
from sb3_expo.tasks.robomimic import (
    MIMICGEN_INSTALL,
    ROBOMIMIC_OBS_KEYS,
    ROBOMIMIC_TASKS,
    RobosuiteEnv,
    make_robomimic_env,
    read_robomimic_env_meta,
)

__all__ = [
    "ADROIT_BINARY_TASKS",
    "ANTMAZE_TASKS",
    "LOCAL_DATASETS",
    "MIMICGEN_INSTALL",
    "ROBOMIMIC_OBS_KEYS",
    "ROBOMIMIC_TASKS",
    "RobosuiteEnv",
    "adroit_binary_dataset_id",
    "adroit_binary_env_id",
    "build_adroit_binary_dataset",
    "make_adroit_binary_env",
    "make_antmaze_env",
    "make_robomimic_env",
    "prepare_offline_dataset",
    "read_robomimic_env_meta",
    "register_envs",
]

FAMILIES = (pointmaze, fetchpush, lift, pickandplace, antmaze, adroit, robomimic)

# Datasets built on this machine instead of downloaded: id -> builder (each takes ``overwrite=``).
LOCAL_DATASETS: dict[str, Callable[..., Any]] = {
    **pointmaze.LOCAL_DATASETS,
    **fetchpush.LOCAL_DATASETS,
    **pickandplace.LOCAL_DATASETS,
    **adroit.LOCAL_DATASETS,
}


def register_envs() -> None:
    """Register every family's task ids with gymnasium, once (importing this package twice is harmless)."""
    for family in FAMILIES:
        for registration in family.ENV_REGISTRATIONS:
            if registration["id"] not in gym.registry:
                gym.register(**registration)


def prepare_offline_dataset(dataset: Any) -> None:
    """
    Build a dataset of :data:`LOCAL_DATASETS` if it is missing (the PointMaze and Fetch scripted
    data, the relabelled Adroit data); any other dataset is left to the loader, which explains how to
    download it.

    :param dataset: what EXPO's ``offline_dataset`` names (a Minari id, a path, transitions or None)
    :raises DatasetNotFoundError: a relabelled dataset's source is not available locally
    """
    if not isinstance(dataset, str) or dataset not in LOCAL_DATASETS:
        return

    def build() -> Any:
        print(f"Building the local Minari dataset '{dataset}' (once)")
        return LOCAL_DATASETS[dataset]()

    load_or_build(dataset, build)


register_envs()
