"""
The robomimic and MimicGen tasks: ``sb3_expo/Robomimic{Lift,Can,Square}-v0`` and
``sb3_expo/MimicGen{Threading,Stack}-v0``, the robosuite environment of a robomimic-format low-dim
``.hdf5`` file whose path the user gives (the same file is the offline data,
:func:`~sb3_expo.data.load_robomimic_hdf5`). robosuite comes with the ``robomimic`` extra; MimicGen is
installed from its source repository (:data:`MIMICGEN_INSTALL`: the ``mimicgen`` project on PyPI is an
unrelated stub).
"""

import importlib
import json
import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_expo.optional import import_optional

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


# The gymnasium ids of this family (sb3_expo.tasks registers them).
ENV_REGISTRATIONS = [
    dict(
        id=env_id,
        entry_point=f"{__name__}:make_robomimic_env",
        max_episode_steps=ROBOMIMIC_MAX_EPISODE_STEPS,
        kwargs=dict(mimicgen=mimicgen),
    )
    for env_id, mimicgen in ROBOMIMIC_TASKS.items()
]
