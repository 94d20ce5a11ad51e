"""
The paper's task families (ALGORITHM.md §6) as Gymnasium ids, registered when this module is imported,
and the offline datasets that are built locally rather than downloaded.

- ``sb3_expo/AntMaze-{medium,large}-{play,diverse}-v1``: Minari ``D4RL/antmaze/<maze>-<kind>-v1``'s
  evaluation maze; Dict observations (``MultiInputPolicy``).
- ``sb3_expo/AdroitHand{Pen,Door,Relocate}Binary-v1``: binary reward; offline data ``D4RL/<task>/cloned-v2``
  relabelled into the local dataset ``sb3_expo/<task>-binary-cloned-v2``.
- ``sb3_expo/Robomimic{Lift,Can,Square}-v0`` and ``sb3_expo/MimicGen{Threading,Stack}-v0``: the robosuite
  env of a robomimic-format low-dim ``.hdf5`` file whose path the user gives.
- ``sb3_expo/PointMazeUMazeFixed-v0`` (:mod:`sb3_expo.envs`): the demo task, with offline data built
  locally (:mod:`sb3_expo.data.pointmaze`, ``sb3_expo/pointmaze-umaze-mixed-v1``).
- ``sb3_expo/PointMazeLargeFixed-v0`` (:mod:`sb3_expo.envs`): the large maze with one start and one goal
  15 cells apart, with a small noisy dataset built locally (``sb3_expo/pointmaze-large-noisy-v0``).
- ``sb3_expo/FetchPushTerminal-v0`` (:mod:`sb3_expo.envs`): FetchPush with its sparse reward, ended at
  success, with mixed scripted data built locally (:mod:`sb3_expo.data.fetchpush`,
  ``sb3_expo/fetchpush-noisy-v0``); Dict observations.

Every task reports ``info["is_success"]``, so SB3 logs ``rollout/success_rate`` and ``EvalCallback``
``eval/success_rate``. Simulators are imported only when an env is created: Gymnasium-Robotics and
MuJoCo (``robotics`` extra), robosuite (``robomimic`` extra) and MimicGen (installed from its source
repository, :data:`MIMICGEN_INSTALL`: the ``mimicgen`` project on PyPI is an unrelated stub).
"""

import functools
import importlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_expo.data import DatasetNotFoundError
from sb3_expo.data.fetchpush import FETCHPUSH_DATASET_ID, build_fetchpush_dataset
from sb3_expo.data.pointmaze import (
    POINTMAZE_DATASET_ID,
    POINTMAZE_LARGE_DATASET_ID,
    build_pointmaze_dataset,
    build_pointmaze_large_dataset,
)
from sb3_expo.envs import AdroitBinaryReward, IsSuccessInfo, TerminateOnSuccess, binary_reward, import_robotics_dependency
from sb3_expo.optional import import_optional

# ------------------------------------------------------------------------------------------------ AntMaze

ANTMAZE_MAZES = ("medium", "large")
ANTMAZE_KINDS = ("play", "diverse")
# env id -> the Minari dataset whose evaluation env it is.
ANTMAZE_TASKS = {
    f"sb3_expo/AntMaze-{maze}-{kind}-v1": f"D4RL/antmaze/{maze}-{kind}-v1" for maze in ANTMAZE_MAZES for kind in ANTMAZE_KINDS
}


def _load_minari_dataset(dataset_id: str, download: bool = False) -> Any:
    """``minari.load_dataset``, with an error that says how to fetch or build a missing dataset."""
    minari = import_optional("minari", "offline")
    try:
        return minari.load_dataset(dataset_id)
    except FileNotFoundError as error:
        if not download:
            raise DatasetNotFoundError(missing_dataset_message(dataset_id)) from error
    minari.download_dataset(dataset_id)
    return minari.load_dataset(dataset_id)


def missing_dataset_message(dataset_id: str) -> str:
    """How to get ``dataset_id``: the ``minari download`` command, or how to build a local one."""
    if dataset_id in LOCAL_DATASETS:
        how = f"build it locally with\n    python -m sb3_expo.tasks {dataset_id}"
    else:
        how = f"fetch it once with\n    minari download {dataset_id}"
    return (
        f"Minari dataset '{dataset_id}' is not available locally under $MINARI_DATASETS_PATH "
        f"(default ~/.minari/datasets): {how}"
    )


def make_antmaze_env(dataset_id: str, download: bool = False, **kwargs: Any) -> gym.Env:
    """
    The AntMaze evaluation task of a D4RL AntMaze dataset, as the paper trains and evaluates on it:
    Minari's ``recover_environment(eval_env=True)`` (the maze with D4RL's fixed start and goal cells),
    ended at the goal as D4RL's evaluation env is (:class:`~sb3_expo.envs.TerminateOnSuccess`), with
    ``info["is_success"]``. The reward stays the env's sparse 0/1; the paper's ``r - 1`` is EXPO's
    ``reward_shift=-1``, applied to offline and online rewards alike.

    :param dataset_id: Minari id, e.g. ``"D4RL/antmaze/large-diverse-v1"`` (its metadata holds the env)
    :param download: download the dataset if it is not available locally
    :param kwargs: passed to ``gym.make`` of the recovered env (e.g. ``render_mode``)
    :return: the environment (Dict observations: ``observation``, ``achieved_goal``, ``desired_goal``)
    :raises DatasetNotFoundError: the dataset is not available locally (the message gives the download command)
    :raises ImportError: Minari or Gymnasium-Robotics is not installed (the message names the extra)
    """
    import_robotics_dependency()
    dataset = _load_minari_dataset(dataset_id, download)
    return IsSuccessInfo(TerminateOnSuccess(dataset.recover_environment(eval_env=True, **kwargs)))


# ------------------------------------------------------------------------------------------ Adroit binary

# task -> (episode length, DAPG's success criterion: goal achieved on more than this many steps)
ADROIT_BINARY_TASKS = {"pen": (100, 20), "door": (200, 25), "relocate": (200, 25)}
# The D4RL Adroit data closest to the AWAC data Cal-QL and RLPD used (human demos + behaviour-cloned rollouts).
ADROIT_DEFAULT_SOURCE = "cloned"


def adroit_binary_env_id(task: str) -> str:
    """``"pen"`` -> ``"sb3_expo/AdroitHandPenBinary-v1"``."""
    return f"sb3_expo/AdroitHand{task.capitalize()}Binary-v1"


def adroit_binary_dataset_id(task: str, source: str = ADROIT_DEFAULT_SOURCE) -> str:
    """The local relabelled copy of ``D4RL/<task>/<source>-v2``: ``"sb3_expo/pen-binary-cloned-v2"``."""
    return f"sb3_expo/{task}-binary-{source}-v2"


def make_adroit_binary_env(task: str, **kwargs: Any) -> gym.Env:
    """
    A binary Adroit task: Gymnasium-Robotics' ``AdroitHand<Task>-v1`` with reward 0 where the goal is
    achieved and -1 elsewhere (:class:`~sb3_expo.envs.AdroitBinaryReward`). The registered id adds the
    paper's episode length (pen 100, door 200, relocate 200 steps).

    :param task: ``"pen"``, ``"door"`` or ``"relocate"``
    :param kwargs: passed to ``gym.make`` of the Adroit env (e.g. ``render_mode``)
    :return: the environment, without time limit
    :raises ImportError: Gymnasium-Robotics or MuJoCo is not installed (the message names the extra)
    """
    if task not in ADROIT_BINARY_TASKS:
        raise ValueError(f"Unknown Adroit task {task!r}: expected one of {sorted(ADROIT_BINARY_TASKS)}")
    gymnasium_robotics = import_robotics_dependency()
    gym.register_envs(gymnasium_robotics)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*reward functions were updated.*")  # about the Dense variants
        env = gym.make(f"AdroitHand{task.capitalize()}-v1", **kwargs).unwrapped
    return AdroitBinaryReward(env, min_success_steps=ADROIT_BINARY_TASKS[task][1])


def _episode_success(episode: Any, dataset_id: str) -> np.ndarray:
    """The per-step ``infos["success"]`` of a Minari episode, ``(T,)`` (a leading reset entry is dropped)."""
    infos = episode.infos or {}
    if "success" not in infos:
        raise ValueError(
            f"Minari dataset '{dataset_id}' records no infos['success'] (found {sorted(infos)}), so its rewards cannot "
            "be relabelled as the binary Adroit task's"
        )
    success = np.asarray(infos["success"], dtype=bool).reshape(-1)
    n_steps = len(episode.rewards)
    if len(success) == n_steps + 1:
        return success[1:]
    if len(success) != n_steps:
        raise ValueError(f"Minari dataset '{dataset_id}': an episode of {n_steps} steps has {len(success)} success flags")
    return success


def build_adroit_binary_dataset(
    task: str, source: str = ADROIT_DEFAULT_SOURCE, download: bool = False, overwrite: bool = False
) -> Any:
    """
    Relabel a D4RL Adroit dataset for the binary task and store it as a local Minari dataset
    (:func:`adroit_binary_dataset_id`), so EXPO loads it by id like any other dataset and reloads it
    after ``EXPO.load``. Rewards become ``success - 1`` from the recorded ``infos["success"]``;
    observations, actions and episode boundaries are unchanged, and the dataset's env is the binary
    task (``dataset.recover_environment()``).

    :param task: ``"pen"``, ``"door"`` or ``"relocate"``
    :param source: which D4RL data: ``"cloned"`` (default: human demos plus rollouts of a policy cloned
        from them, like the data Cal-QL and RLPD used), ``"human"`` or ``"expert"``
    :param download: download ``D4RL/<task>/<source>-v2`` if it is not available locally
    :param overwrite: rebuild the relabelled dataset if it exists
    :return: the relabelled ``minari.MinariDataset``
    :raises DatasetNotFoundError: the source dataset is not available locally
    """
    minari = import_optional("minari", "offline")
    from minari.data_collector import EpisodeBuffer

    dataset_id = adroit_binary_dataset_id(task, source)
    try:
        existing = minari.load_dataset(dataset_id)
    except FileNotFoundError:
        existing = None
    if existing is not None and not overwrite:
        return existing
    if existing is not None:
        minari.delete_dataset(dataset_id)
    source_id = f"D4RL/{task}/{source}-v2"
    original = _load_minari_dataset(source_id, download)
    buffers = [
        EpisodeBuffer(
            id=episode.id,
            observations=episode.observations,
            actions=episode.actions,
            rewards=binary_reward(_episode_success(episode, source_id)).tolist(),
            terminations=np.asarray(episode.terminations, dtype=bool).tolist(),
            truncations=np.asarray(episode.truncations, dtype=bool).tolist(),
        )
        for episode in original.iterate_episodes()
    ]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`author_email` is set to None")
        return minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=adroit_binary_env_id(task),
            eval_env=adroit_binary_env_id(task),
            observation_space=original.observation_space,
            action_space=original.action_space,
            algorithm_name=f"{source_id} relabelled",
            author="sb3_expo",
            code_permalink="sb3_expo.tasks.build_adroit_binary_dataset",
            description=f"{source_id} with binary rewards success - 1 for {adroit_binary_env_id(task)}",
        )


# --------------------------------------------------------------------------------- robomimic and MimicGen

# env id -> whether the task's robosuite environment comes from MimicGen (True) or robosuite itself (False)
ROBOMIMIC_TASKS = {
    "sb3_expo/RobomimicLift-v0": False,
    "sb3_expo/RobomimicCan-v0": False,
    "sb3_expo/RobomimicSquare-v0": False,
    "sb3_expo/MimicGenThreading-v0": True,
    "sb3_expo/MimicGenStack-v0": True,
}
# MimicGen is not on PyPI: the `mimicgen` name there is an unrelated 4 kB stub (a fake "data synchronization"
# client), so no extra of this package names it. It is installed from NVIDIA's source repository.
MIMICGEN_INSTALL = "git clone https://github.com/NVlabs/mimicgen && pip install -e mimicgen"
# robomimic's low-dimensional observation keys for these tasks, in the order they are concatenated.
ROBOMIMIC_OBS_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object")
# robomimic's default rollout horizon.
ROBOMIMIC_MAX_EPISODE_STEPS = 400
# robomimic names robosuite's "object-state" observation "object".
_ROBOSUITE_OBS_NAMES = {"object": "object-state"}


def read_robomimic_env_meta(dataset_path: str | os.PathLike) -> dict[str, Any]:
    """
    The environment a robomimic / MimicGen file was recorded in: ``data.attrs["env_args"]``, a JSON dict
    with ``env_name`` and ``env_kwargs`` (robosuite's ``make`` arguments).

    :param dataset_path: the ``.hdf5`` file
    :raises FileNotFoundError: the file does not exist (the message says where to get the datasets)
    """
    if not os.path.isfile(dataset_path):
        raise FileNotFoundError(
            f"robomimic dataset {os.fspath(dataset_path)!r} not found. Download the low-dim datasets with robomimic's "
            "scripts/download_datasets.py (--tasks lift can square --dataset_types ph --hdf5_types low_dim) or "
            "MimicGen's download_datasets.py, then pass the file's path."
        )
    h5py = import_optional("h5py", "offline")
    with h5py.File(dataset_path, "r") as file:
        if "data" not in file or "env_args" not in file["data"].attrs:
            raise ValueError(f"{os.fspath(dataset_path)!r} is not a robomimic file: it has no data.attrs['env_args']")
        return json.loads(file["data"].attrs["env_args"])


class RobosuiteEnv(gym.Env):
    """
    A robosuite environment as a Gymnasium env with robomimic's flat low-dimensional observation: the
    arrays of ``obs_keys`` concatenated in order, as :func:`~sb3_expo.data.load_robomimic_hdf5` reads the
    offline data. The reward is robomimic's sparse success (1 when the task is done, else 0) and the
    episode ends on success, as robomimic's rollouts do; the time limit comes with the registered id.

    :param env: a robosuite environment (``robosuite.make(...)``)
    :param obs_keys: robomimic observation keys (``"object"`` is robosuite's ``"object-state"``)
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, env: Any, obs_keys: Sequence[str] = ROBOMIMIC_OBS_KEYS):
        self.env = env
        self.obs_keys = tuple(obs_keys)
        low, high = env.action_spec
        self.action_space = spaces.Box(np.asarray(low, np.float32), np.asarray(high, np.float32), dtype=np.float32)
        size = self._flatten(env.reset()).shape[0]
        self.observation_space = spaces.Box(-np.inf, np.inf, (size,), np.float32)

    def _flatten(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        missing = [key for key in self.obs_keys if _ROBOSUITE_OBS_NAMES.get(key, key) not in obs]
        if missing:
            raise KeyError(f"robosuite observation has no {missing} (it has {sorted(obs)})")
        arrays = [np.asarray(obs[_ROBOSUITE_OBS_NAMES.get(key, key)], np.float32).ravel() for key in self.obs_keys]
        return np.concatenate(arrays)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self._flatten(self.env.reset()), {"is_success": False}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, _, _, info = self.env.step(np.asarray(action))
        success = bool(self.env._check_success())
        return self._flatten(obs), float(success), success, False, {**info, "success": success, "is_success": success}

    def close(self) -> None:
        self.env.close()


def make_robomimic_env(
    dataset_path: str | os.PathLike | None = None, obs_keys: Sequence[str] = ROBOMIMIC_OBS_KEYS, mimicgen: bool = False
) -> gym.Env:
    """
    The robosuite environment a robomimic or MimicGen low-dim file was recorded in (its
    ``env_args``), without rendering, cameras or reward shaping, as a Gymnasium env
    (:class:`RobosuiteEnv`).

    :param dataset_path: the ``.hdf5`` file (the same file EXPO's ``offline_dataset`` names)
    :param obs_keys: observation keys, in the order the offline data concatenates them
    :param mimicgen: the file's environment is one of MimicGen's, registered with robosuite by ``import mimicgen``
    :return: the environment, without time limit
    :raises ImportError: robosuite is not installed (the message names the extra), or MimicGen's environments
        are not (the message says how to install MimicGen from source)
    :raises FileNotFoundError: the file does not exist
    """
    robosuite = import_optional("robosuite", "robomimic")
    if dataset_path is None:
        raise ValueError(
            "robomimic / MimicGen tasks are created from their dataset file: pass dataset_path (with rl-zoo: "
            "--env-kwargs dataset_path:\"'/path/to/low_dim.hdf5'\")"
        )
    env_meta = read_robomimic_env_meta(dataset_path)
    if mimicgen:
        require_mimicgen_env(env_meta["env_name"])
    env_kwargs = {
        **env_meta["env_kwargs"],
        "has_renderer": False,
        "has_offscreen_renderer": False,
        "use_camera_obs": False,
        "reward_shaping": False,
        "ignore_done": True,  # the registered time limit ends episodes
    }
    return RobosuiteEnv(robosuite.make(env_meta["env_name"], **env_kwargs), obs_keys)


def require_mimicgen_env(env_name: str) -> None:
    """
    Import MimicGen, which registers its environments with robosuite, and check that ``env_name`` is now
    one of robosuite's environments. A successful ``import mimicgen`` alone proves nothing: PyPI's
    ``mimicgen`` is an unrelated stub that imports fine and registers no environment.

    :param env_name: the robosuite environment of the dataset file (e.g. ``"Threading_D0"``)
    :raises ImportError: MimicGen is not installed, or what is installed under that name registers no ``env_name``
    """
    try:
        importlib.import_module("mimicgen")
    except ImportError as error:
        raise ImportError(f"MimicGen tasks need NVIDIA's MimicGen, installed from source: {MIMICGEN_INSTALL}") from error
    registered = getattr(importlib.import_module("robosuite.environments.base"), "REGISTERED_ENVS", {})
    if env_name not in registered:
        raise ImportError(
            f"After `import mimicgen`, robosuite has no environment {env_name!r}: the installed 'mimicgen' package is "
            f"not NVIDIA's MimicGen (PyPI's 'mimicgen' is an unrelated stub: pip uninstall mimicgen). "
            f"Install MimicGen from source: {MIMICGEN_INSTALL}"
        )


# ---------------------------------------------------------------------------------------- local datasets


# Datasets built on this machine instead of downloaded: id -> builder.
LOCAL_DATASETS: dict[str, Callable[[], Any]] = {
    POINTMAZE_DATASET_ID: build_pointmaze_dataset,
    POINTMAZE_LARGE_DATASET_ID: build_pointmaze_large_dataset,
    FETCHPUSH_DATASET_ID: build_fetchpush_dataset,
    **{adroit_binary_dataset_id(task): functools.partial(build_adroit_binary_dataset, task) for task in ADROIT_BINARY_TASKS},
}


def prepare_offline_dataset(dataset: Any) -> None:
    """
    Build a dataset of :data:`LOCAL_DATASETS` if it is missing (the PointMaze and FetchPush scripted
    data, the relabelled Adroit data); any other dataset is left to the loader, which explains how to
    download it.

    :param dataset: what EXPO's ``offline_dataset`` names (a Minari id, a path, transitions or None)
    :raises DatasetNotFoundError: a relabelled dataset's source is not available locally
    """
    if not isinstance(dataset, str) or dataset not in LOCAL_DATASETS:
        return
    minari = import_optional("minari", "offline")
    try:
        minari.load_dataset(dataset)
    except FileNotFoundError:
        print(f"Building the local Minari dataset '{dataset}' (once)")
        LOCAL_DATASETS[dataset]()


# ------------------------------------------------------------------------------------------- registration


def register_task_envs() -> None:
    """Register every task id of this module with gymnasium (again is harmless)."""
    for env_id, dataset_id in ANTMAZE_TASKS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=f"{__name__}:make_antmaze_env", kwargs=dict(dataset_id=dataset_id))
    for task, (max_episode_steps, _) in ADROIT_BINARY_TASKS.items():
        if adroit_binary_env_id(task) not in gym.registry:
            gym.register(
                adroit_binary_env_id(task),
                entry_point=f"{__name__}:make_adroit_binary_env",
                max_episode_steps=max_episode_steps,
                kwargs=dict(task=task),
            )
    for env_id, mimicgen in ROBOMIMIC_TASKS.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point=f"{__name__}:make_robomimic_env",
                max_episode_steps=ROBOMIMIC_MAX_EPISODE_STEPS,
                kwargs=dict(mimicgen=mimicgen),
            )


register_task_envs()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m sb3_expo.tasks DATASET_ID [--download]``: build a local dataset of :data:`LOCAL_DATASETS`."""
    import argparse

    parser = argparse.ArgumentParser(description="Build a local Minari dataset of sb3_expo's tasks (no download).")
    parser.add_argument("dataset_id", choices=sorted(LOCAL_DATASETS))
    parser.add_argument("--overwrite", action="store_true", help="rebuild it if it exists")
    args = parser.parse_args(argv)
    minari = import_optional("minari", "offline")
    if args.overwrite and args.dataset_id in minari.list_local_datasets():
        minari.delete_dataset(args.dataset_id)
    prepare_offline_dataset(args.dataset_id)
    print(f"'{args.dataset_id}' is ready under $MINARI_DATASETS_PATH (default ~/.minari/datasets)")


if __name__ == "__main__":
    main()
