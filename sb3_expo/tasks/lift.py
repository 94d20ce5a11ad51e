"""
robosuite's Lift with a sparse reward, ended at success, and the mixed-quality offline dataset its
scripted controllers record, built locally (no download) as a robomimic-format low-dim ``.hdf5`` file.
A held-out task of the learning benchmark: nothing of EXPO's recipe was tuned on it.

The task (:data:`LIFT_ENV_ID`, :func:`make_lift_env`) is robosuite's ``Lift`` (a Panda arm, its default
``OSC_POSE`` arm controller: a 7-D action, the gripper's displacement, its rotation and the finger
command) without rendering or cameras, the reward robosuite's sparse success (1 once the cube's centre
is 4 cm above the table, about 2 cm higher than it rests, else 0), the episode ended there, and
robomimic's low-dim observation: the keys of :data:`LIFT_OBS_KEYS` concatenated in sorted order, the
order in which :func:`~sb3_expo.data.load_robomimic_hdf5` reads a file by default. The cube's placement
is drawn from the reset seed (robosuite 1.5 draws it from numpy's global generator, which
:class:`LiftEnv` seeds for the reset only).

The expert flies above the cube with open fingers, turns the gripper to the cube's faces, goes down
around it, closes the fingers and lifts; Gaussian action noise makes its episodes diverse. A decoy, the
same controller grasping next to the cube instead (closing on air, rising and trying another spot),
makes up the rest of the data: its episodes share the expert's motions and differ in where they grasp,
so that imitation alone is mediocre while the expert episodes show the critic the task. The file is
written in robomimic's layout (``data/demo_<i>/{obs,next_obs}/<key>``, ``actions``, ``rewards``,
``dones``, ``data.attrs["env_args"]``), so that the robomimic loader reads it end to end, with the
filter keys ``mask/expert``, ``mask/other`` and ``mask/success``. :func:`build_lift_dataset` builds it
into :func:`lift_dataset_path` (under ``$MINARI_DATASETS_PATH``), :data:`LIFT_DATASET` names that path
wherever a dataset is named by a path (``load_offline_dataset(LIFT_DATASET)``, the benchmark's ``dataset_id``).
"""

import contextlib
import dataclasses
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_expo.optional import import_optional
from sb3_expo.tasks.recording import ControllerCheck, MixtureRecipe, MixtureSettings, rollout_episode
from sb3_expo.tasks.robomimic import _ROBOSUITE_OBS_NAMES, ROBOMIMIC_OBS_KEYS, RobosuiteEnv

# ------------------------------------------------------------------------------------------------- task

LIFT_ENV_ID = "sb3_expo/LiftSparse-v0"

# The noisy expert (noise 0.2) needs 30-90 steps, 44 on average (at robosuite's 20 Hz control); at noise 0.25 it needed
# 62 on average and up to 150, so that 100 would cut 15% of its episodes. robomimic's rollouts of Lift allow 400.
LIFT_MAX_EPISODE_STEPS = 100

# robomimic's low-dim keys in sorted order: the order load_robomimic_hdf5 concatenates a file's keys in when it is
# given none, so that `load_offline_dataset(path)` (and EXPO's `offline_dataset=path`) matches the env's observation.
LIFT_OBS_KEYS = tuple(sorted(ROBOMIMIC_OBS_KEYS))
# Where each key sits in the flat observation: "object" is robosuite's object-state (cube position, cube
# quaternion, and the cube's position relative to the gripper), then the gripper's position, its quaternion
# (x, y, z, w, as robosuite writes them) and the two finger joints.
CUBE_POS, CUBE_QUAT = slice(0, 3), slice(3, 7)
EEF_POS, EEF_QUAT, GRIPPER_QPOS = slice(10, 13), slice(13, 17), slice(17, 19)

# robosuite.make arguments of the task and of the file's env_args (robomimic's "env_kwargs"); the controller
# (robosuite 1.5's default composite controller of the Panda: OSC_POSE arm, the fingers open at -1 and closed
# at 1) is written into the file when it is built. hard_reset=False: a reset re-places the cube in the loaded
# model instead of reloading and recompiling it (a reset is then about 100x faster).
LIFT_ENV_NAME = "Lift"
LIFT_ENV_KWARGS: dict[str, Any] = dict(
    robots="Panda",
    control_freq=20,
    reward_shaping=False,
    reward_scale=1.0,
    use_object_obs=True,
    has_renderer=False,
    has_offscreen_renderer=False,
    use_camera_obs=False,
    ignore_done=True,  # the registered time limit ends episodes
    hard_reset=False,
)
# robosuite draws the cube's size (4.0 to 4.4 cm) from numpy's global generator when it builds the model, which with
# hard_reset=False happens once per env: built from this seed, every env has the same cube, so that a reset seed
# gives the same episode start in every env (the recording's, the evaluation's).
LIFT_MODEL_SEED = 0
# robomimic's EnvType of robosuite environments, written into env_args["type"].
ROBOMIMIC_ROBOSUITE_TYPE = 1

# The offline dataset: a robomimic file under the Minari datasets' root, and its defaults.
LIFT_DATASET_FILE = os.path.join("sb3_expo", "robosuite-lift-mixed-v0.hdf5")
DEFAULT_N_EPISODES = 120
DEFAULT_EXPERT_FRACTION = 0.5
DEFAULT_NOISE_STD = 0.2

# Before writing, the expert (with the dataset's noise) and random actions run this many episodes each;
# the build stops if the expert succeeds less often than MIN_EXPERT_SUCCESS or random actions more
# often than MAX_RANDOM_SUCCESS.
DEFAULT_CHECK_EPISODES = 10
MIN_EXPERT_SUCCESS = 0.8
MAX_RANDOM_SUCCESS = 0.1

# The gripper looks straight down when its rotation is this matrix (robosuite's Panda at rest, up to a yaw).
GRIPPER_DOWN = np.diag([1.0, -1.0, -1.0])


def lift_dataset_path() -> Path:
    """
    Where the dataset lives: ``sb3_expo/robosuite-lift-mixed-v0.hdf5`` under ``$MINARI_DATASETS_PATH`` (default
    ``~/.minari/datasets``), read when called, so that a test or a job that sets the variable later is obeyed.
    """
    root = os.environ.get("MINARI_DATASETS_PATH") or os.path.join(os.path.expanduser("~"), ".minari", "datasets")
    return Path(root) / LIFT_DATASET_FILE


class LiftDatasetPath(os.PathLike):
    """
    The dataset's path as an ``os.PathLike`` that reads ``$MINARI_DATASETS_PATH`` each time it is used
    (:func:`lift_dataset_path`), not when it is created: a constant that can name the dataset in a setting made
    at import time (the benchmark's ``Task.dataset_id``) and still follow the variable a job or a test sets later.
    """

    def __fspath__(self) -> str:
        return os.fspath(lift_dataset_path())

    def __str__(self) -> str:
        return self.__fspath__()

    def __repr__(self) -> str:
        return f"LiftDatasetPath({self.__fspath__()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LiftDatasetPath)

    def __hash__(self) -> int:
        return hash(LiftDatasetPath)


# The dataset, wherever offline data is named by a path (load_offline_dataset, EXPO's offline_dataset).
LIFT_DATASET = LiftDatasetPath()


@contextlib.contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator inside the block and give it its state back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class LiftEnv(RobosuiteEnv):
    """
    :class:`~sb3_expo.tasks.robomimic.RobosuiteEnv` (sparse 0/1 reward, ended at success,
    ``info["is_success"]`` at every step) whose reset is reproducible: robosuite 1.5 draws the cube's
    placement and the arm's initial joint noise from numpy's global generator, which is seeded from the
    env's own generator for the reset only (and restored afterwards, so nothing else's randomness moves).

    :param env: robosuite's ``Lift`` (``robosuite.make("Lift", ...)``)
    :param obs_keys: robomimic observation keys, in the order they are concatenated
    """

    def __init__(self, env: Any, obs_keys: Sequence[str] = LIFT_OBS_KEYS):
        super().__init__(env, obs_keys)
        spec = env.observation_spec()
        # Each key's size, to split flat observations back into robomimic's keys (split) without the simulator.
        self.key_sizes = {key: int(np.size(spec[_ROBOSUITE_OBS_NAMES.get(key, key)])) for key in self.obs_keys}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        gym.Env.reset(self, seed=seed)
        with numpy_global_seed(int(self.np_random.integers(2**32))):
            obs = self.env.reset()
        return self._flatten(obs), {"is_success": False}

    def split(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        """
        Flat observations (one or a batch of rows) back into robomimic's keys.

        :param observations: ``(..., size)`` rows of this env's observation
        :return: key -> ``(..., key size)``, in :attr:`obs_keys` order
        """
        parts = np.split(observations, np.cumsum(list(self.key_sizes.values()))[:-1], axis=-1)
        return dict(zip(self.obs_keys, parts))


def lift_env_kwargs() -> dict[str, Any]:
    """:data:`LIFT_ENV_KWARGS` with the controller written out (robosuite 1.5's default composite controller of the Panda)."""
    controllers = import_optional("robosuite.controllers", "robomimic")
    return {**LIFT_ENV_KWARGS, "controller_configs": controllers.load_composite_controller_config(robot="Panda")}


def create_lift(**kwargs: Any) -> LiftEnv:
    """
    Entry point of :data:`LIFT_ENV_ID`: robosuite's ``Lift`` as :class:`LiftEnv`. Prefer
    :func:`make_lift_env` or ``gym.make``, which add the time limit.

    :param kwargs: overrides of :data:`LIFT_ENV_KWARGS` (``robosuite.make`` arguments)
    :return: the environment, without time limit
    :raises ImportError: robosuite is not installed (the message names the extra)
    """
    robosuite = import_optional("robosuite", "robomimic")
    with warnings.catch_warnings(), numpy_global_seed(LIFT_MODEL_SEED):
        warnings.simplefilter("ignore", DeprecationWarning)
        return LiftEnv(robosuite.make(LIFT_ENV_NAME, **{**lift_env_kwargs(), **kwargs}), LIFT_OBS_KEYS)


def make_lift_env(max_episode_steps: int = LIFT_MAX_EPISODE_STEPS, **kwargs: Any) -> gym.Env:
    """
    The sparse-reward manipulation task: robosuite's Lift (pick the cube up from the table with the
    Panda; 7-D action in [-1, 1]: the gripper's displacement, up to 5 cm a step, its rotation, and the
    fingers, -1 open, 1 closed), the reward 1 at the step the cube is lifted, which ends the episode,
    else 0. A flat 19-D observation: robomimic's ``object`` (the cube's position, quaternion and offset
    from the gripper), ``robot0_eef_pos``, ``robot0_eef_quat`` and ``robot0_gripper_qpos``, in that order.
    Creating it is slow (robosuite builds and compiles its model); stepping it is cheap next to an EXPO update.

    :param max_episode_steps: time limit (truncation)
    :param kwargs: overrides of :data:`LIFT_ENV_KWARGS`
    :return: the environment, as ``gym.make(LIFT_ENV_ID, max_episode_steps=...)``
    :raises ImportError: robosuite is not installed (the message names the extra)
    """
    return gym.make(LIFT_ENV_ID, max_episode_steps=max_episode_steps, **kwargs)


# ------------------------------------------------------------------------------------------ offline dataset


def _quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion in robosuite's ``(x, y, z, w)`` order."""
    x, y, z, w = np.asarray(quat, dtype=np.float64) / max(float(np.linalg.norm(quat)), 1e-9)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _rotation_vector(matrix: np.ndarray) -> np.ndarray:
    """Axis times angle of a rotation matrix (the OSC controller's rotation action is one, in the base frame)."""
    angle = float(np.arccos(np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0)))
    axis = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    norm = float(np.linalg.norm(axis))
    if angle < 1e-6:
        return np.zeros(3)
    if norm < 1e-6:  # a half turn: the axis is the eigenvector of eigenvalue 1
        return np.linalg.eigh((matrix + np.eye(3)) / 2.0)[1][:, -1] * angle
    return axis / norm * angle


def _yaw_matrix(angle: float) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])


class LiftExpert:
    """
    Scripted Lift controller for the OSC_POSE Panda, read off each observation (no memory: the fingers'
    opening is what remembers that a grasp has begun):

    1. near the grasp point with the fingers closed on something (opening below ``holding_width``): lift;
    2. at the grasp point's height, or near it with the fingers closing: close them and stay;
    3. within ``xy_tolerance`` above the grasp point: go down to it, fingers open;
    4. low but elsewhere: rise to ``hover`` above the cube first, so as not to knock it;
    5. otherwise: fly to ``hover`` above the grasp point, fingers open.

    The grasp point is the cube's centre. The position action is ``gain`` times the gripper's
    displacement to its waypoint (an action of 1 moves the controller's target 5 cm); the rotation
    action turns the gripper to look straight down with its fingers facing the cube's sides (the yaw of
    the cube's faces nearest the gripper's). Gaussian noise of ``noise_std`` is added to the six arm
    actions, and the action is clipped to [-1, 1].

    :param env: the Lift environment (any wrapping); its action bounds are read once
    :param noise_std: standard deviation of the Gaussian noise on the arm's six actions
    :param seed: seed of the noise generator
    :param gain: proportional gain of the position action
    :param rotation_gain: proportional gain of the rotation action (per radian of error)
    :param hover: height above the cube to fly at
    :param xy_tolerance: horizontal distance to the grasp point within which the gripper goes down
    :param holding_width: finger opening below which the fingers hold the cube (it is about 4 cm wide, the
        fingers open 8 cm)
    """

    def __init__(
        self,
        env: gym.Env,
        noise_std: float = DEFAULT_NOISE_STD,
        seed: int | None = None,
        gain: float = 10.0,
        rotation_gain: float = 2.0,
        hover: float = 0.06,
        xy_tolerance: float = 0.02,
        holding_width: float = 0.05,
    ):
        self.action_space = env.action_space
        self.noise_std, self.gain, self.rotation_gain, self.hover = noise_std, gain, rotation_gain, hover
        self.xy_tolerance, self.holding_width = xy_tolerance, holding_width
        self.rng = np.random.default_rng(seed)

    def grasp_point(self, cube: np.ndarray) -> np.ndarray:
        """Where to grasp: the cube's centre. Subclasses grasp elsewhere."""
        return cube

    def phase(self, gripper: np.ndarray, point: np.ndarray, width: float) -> tuple[str, np.ndarray, float]:
        """
        What to do now.

        :param gripper: the gripper's ``(x, y, z)``
        :param point: the grasp point's ``(x, y, z)``
        :param width: the fingers' opening
        :return: the phase's name (``"lift"``, ``"close"``, ``"descend"``, ``"rise"``, ``"approach"``), the
            waypoint's ``(x, y, z)`` and the finger command
        """
        horizontal = float(np.linalg.norm(point[:2] - gripper[:2]))
        height = float(gripper[2] - point[2])
        near = horizontal < 1.5 * self.xy_tolerance and abs(height) < 0.02
        if near and width < self.holding_width:
            return "lift", np.r_[point[:2], gripper[2] + 0.1], 1.0
        if near and (height < 0.01 or width < 0.075):
            return "close", point.copy(), 1.0
        if horizontal < self.xy_tolerance:
            return "descend", point - np.array([0.0, 0.0, 0.01]), -1.0
        if height < 0.03:
            return "rise", np.r_[gripper[:2], point[2] + self.hover], -1.0
        return "approach", point + np.array([0.0, 0.0, self.hover]), -1.0

    def rotation(self, gripper_quat: np.ndarray, cube_quat: np.ndarray) -> np.ndarray:
        """The rotation action (before the gain) that points the gripper down with its fingers facing the cube's sides."""
        current, cube = _quat_to_matrix(gripper_quat), _quat_to_matrix(cube_quat)
        gripper_yaw = np.arctan2(*(current @ GRIPPER_DOWN.T)[[1, 0], 0])
        cube_yaw = np.arctan2(cube[1, 0], cube[0, 0])
        # The cube looks the same every quarter turn: turn the least way to one of its faces.
        turn = (cube_yaw - gripper_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4
        return _rotation_vector(_yaw_matrix(gripper_yaw + turn) @ GRIPPER_DOWN @ current.T)

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        """
        :param observation: one (not batched) flat Lift observation
        :return: the action, clipped to the action space
        """
        gripper, fingers = observation[EEF_POS], observation[GRIPPER_QPOS]
        _, waypoint, fingers_command = self.phase(
            gripper, self.grasp_point(observation[CUBE_POS]), float(fingers[0] - fingers[1])
        )
        action = np.zeros(self.action_space.shape, dtype=np.float64)
        action[:3] = self.gain * (waypoint - gripper)
        action[3:6] = self.rotation_gain * self.rotation(observation[EEF_QUAT], observation[CUBE_QUAT])
        action[6] = fingers_command
        if self.noise_std > 0:
            action[:6] += self.rng.normal(0.0, self.noise_std, size=6)
        return np.clip(action, self.action_space.low, self.action_space.high).astype(self.action_space.dtype)


class LiftDecoy(LiftExpert):
    """
    Suboptimal data: the same controller grasping next to the cube instead of at it, at a spot between
    ``min_offset`` and ``max_offset`` from the cube's centre in a random direction (the cube is about 4 cm
    wide). It goes down there, closes the fingers on air (or on the cube's edge), rises, and tries
    another spot, for the whole episode; it lifts the cube only by chance.

    :param env: the Lift environment
    :param min_offset: least horizontal distance of a grasp spot from the cube's centre
    :param max_offset: largest such distance
    :param kwargs: :class:`LiftExpert` arguments (``noise_std``, ``seed``, ...)
    """

    def __init__(self, env: gym.Env, min_offset: float = 0.04, max_offset: float = 0.07, **kwargs: Any):
        super().__init__(env, **kwargs)
        self.min_offset, self.max_offset = min_offset, max_offset
        self._offset: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the last episode's grasp spot (called before every episode)."""
        self._offset = None

    def _draw_offset(self) -> np.ndarray:
        angle = self.rng.uniform(0.0, 2 * np.pi)
        distance = self.rng.uniform(self.min_offset, self.max_offset)
        return np.array([distance * np.cos(angle), distance * np.sin(angle), 0.0])

    def grasp_point(self, cube: np.ndarray) -> np.ndarray:
        if self._offset is None:
            self._offset = self._draw_offset()
        return cube + self._offset

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        gripper, fingers = observation[EEF_POS], observation[GRIPPER_QPOS]
        point = self.grasp_point(observation[CUBE_POS])
        name, _, _ = self.phase(gripper, point, float(fingers[0] - fingers[1]))
        if name == "lift" and gripper[2] > point[2] + 0.015:  # a failed grasp, lifted: try another spot
            self._offset = self._draw_offset()
        return super().__call__(observation)


def _lift_ref_scores(check: ControllerCheck) -> tuple[float, float]:
    """The dataset's reference returns: random actions' and the noisy expert's (the 0/1 reward, summed)."""
    return check.random_mean_return, check.expert_mean_return


LIFT_RECIPE = MixtureRecipe(
    make_env=lambda: make_lift_env(),
    expert=LiftExpert,
    other=LiftDecoy,
    defaults=MixtureSettings(
        n_episodes=DEFAULT_N_EPISODES,
        expert_fraction=DEFAULT_EXPERT_FRACTION,
        noise_std=DEFAULT_NOISE_STD,
        check_episodes=DEFAULT_CHECK_EPISODES,
    ),
    min_expert_success=MIN_EXPERT_SUCCESS,
    max_random_success=MAX_RANDOM_SUCCESS,
    ref_scores=_lift_ref_scores,
    code_permalink=f"{__name__}.build_lift_dataset",
    task=f"robosuite Lift, sparse reward 1 at success and 0 before, termination at success, {LIFT_MAX_EPISODE_STEPS} steps",
    expert_does="a scripted controller that grasps the cube from above and lifts it",
    other_does="the same controller grasping next to the cube, again and again",
)


def write_robomimic_hdf5(
    path: str | os.PathLike,
    episodes: list[dict[str, Any]],
    env: gym.Env,
    env_kwargs: dict[str, Any],
    masks: dict[str, list[int]] | None = None,
    **attrs: Any,
) -> Path:
    """
    Write recorded episodes as a robomimic low-dim file: ``data/demo_<i>/obs/<key>`` and
    ``next_obs/<key>`` (``T`` rows each), ``actions``, ``rewards``, ``dones`` (1 at a terminal step: the
    success) and ``attrs["num_samples"]``; ``data.attrs["total"]`` (all steps) and ``data.attrs["env_args"]``
    (JSON: ``env_name``, ``type``, ``env_kwargs``, what robomimic and
    :func:`~sb3_expo.tasks.robomimic.make_robomimic_env` recreate the env from); robomimic's filter keys
    ``mask/<name>`` (demo names) for ``masks``. The file is written next to its path and moved there
    at the end, so that an interrupted build leaves no half-written dataset behind.

    :param path: the ``.hdf5`` file to write (its folder is created)
    :param episodes: as :func:`~sb3_expo.tasks.recording.rollout_episode` returns them
    :param env: the :class:`LiftEnv` they were recorded in (any wrapping): it splits the flat observations into keys
    :param env_kwargs: ``robosuite.make`` arguments of the env
    :param masks: filter key -> indices of the episodes it lists
    :param attrs: more ``data.attrs`` (strings or numbers: a description, the controllers' names, ...)
    :return: the path
    """
    h5py = import_optional("h5py", "offline")
    robosuite = import_optional("robosuite", "robomimic")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    lift_env: LiftEnv = env.unwrapped  # type: ignore[assignment]
    env_args = dict(
        env_name=LIFT_ENV_NAME, env_version=robosuite.__version__, type=ROBOMIMIC_ROBOSUITE_TYPE, env_kwargs=env_kwargs
    )
    with h5py.File(partial, "w") as file:
        data = file.create_group("data")
        for index, episode in enumerate(episodes):
            demo = data.create_group(f"demo_{index}")
            keys = lift_env.split(np.asarray(episode["observations"], dtype=np.float32))
            for group, rows in (("obs", slice(None, -1)), ("next_obs", slice(1, None))):
                for key, values in keys.items():
                    demo.create_dataset(f"{group}/{key}", data=values[rows])
            demo.create_dataset("actions", data=np.asarray(episode["actions"], dtype=np.float32))
            demo.create_dataset("rewards", data=np.asarray(episode["rewards"], dtype=np.float32))
            demo.create_dataset("dones", data=np.asarray(episode["terminations"], dtype=np.int64))
            demo.attrs["num_samples"] = len(episode["actions"])
        data.attrs["total"] = sum(len(episode["actions"]) for episode in episodes)
        data.attrs["env_args"] = json.dumps(env_args)
        for key, value in attrs.items():
            data.attrs[key] = value
        for name, indices in (masks or {}).items():
            file.create_dataset(f"mask/{name}", data=np.array([f"demo_{index}" for index in indices], dtype="S"))
    os.replace(partial, path)
    return path


def build_lift_dataset(path: str | os.PathLike | None = None, overwrite: bool = False, **settings: Any) -> Path:
    """
    Record a mixed-quality offline dataset on :data:`LIFT_ENV_ID` (robosuite's Lift, sparse 0/1 reward,
    ended at success) as a robomimic-format low-dim ``.hdf5`` file: ``expert_fraction`` of the episodes
    come from :class:`LiftExpert` (it lifts the cube in 30-90 steps, 44 on average), the rest from
    :class:`LiftDecoy` (it grasps next to the cube for the 100 steps). The filter keys ``expert``, ``other``
    and ``success`` list each kind of episode (``load_robomimic_hdf5(path, filter_key="expert")``).
    Imitation alone is mediocre on the default data: a behaviour-cloning MLP trained on all of it lifted the
    cube in 50% of 20 episodes, one trained on the expert's episodes alone in 75% (3000 steps each).

    An existing file is reused (its size is not checked against ``settings``) unless ``overwrite``. Before
    recording, the noisy expert and random actions run ``check_episodes`` episodes each on starts the
    dataset does not use, and nothing is written unless the expert succeeds in at least
    :data:`MIN_EXPERT_SUCCESS` of them and random actions in at most :data:`MAX_RANDOM_SUCCESS`.

    :param path: the file to write; default :func:`lift_dataset_path` (under ``$MINARI_DATASETS_PATH``)
    :param overwrite: record it again if it exists
    :param settings: :class:`~sb3_expo.tasks.recording.MixtureSettings` fields that differ from
        ``LIFT_RECIPE.defaults``: ``n_episodes`` (120: about 9k transitions), ``expert_fraction`` (0.5; 1 records
        expert data only), ``noise_std`` (0.2), ``seed`` (0:
        episode ``i`` resets with ``seed + i``, and the controllers are seeded from it) and
        ``check_episodes`` (10)
    :return: the file's path
    :raises ImportError: robosuite or h5py is not installed
    :raises RuntimeError: the check failed (nothing is written)
    """
    path = Path(path) if path is not None else lift_dataset_path()
    if path.is_file() and not overwrite:
        return path
    chosen = dataclasses.replace(LIFT_RECIPE.defaults, **settings)
    if not 0.0 <= chosen.expert_fraction <= 1.0:
        raise ValueError(f"expert_fraction must be in [0, 1], got {chosen.expert_fraction}")
    env = LIFT_RECIPE.make_env()
    try:
        check = LIFT_RECIPE.check(env, chosen.noise_std, chosen.seed + chosen.n_episodes, chosen.check_episodes)
        episodes, is_expert = _record_mixture(env, chosen)
    finally:
        env.close()
    success = [episode["is_success"] for episode in episodes]
    masks = dict(
        expert=[index for index, by_expert in enumerate(is_expert) if by_expert],
        other=[index for index, by_expert in enumerate(is_expert) if not by_expert],
        success=[index for index, succeeded in enumerate(success) if succeeded],
    )
    return write_robomimic_hdf5(path, episodes, env, lift_env_kwargs(), masks, **_metadata(chosen, check, success))


def _record_mixture(env: gym.Env, settings: MixtureSettings) -> tuple[list[dict[str, Any]], list[bool]]:
    """
    ``record_mixture`` of :class:`LiftExpert` (seeded ``seed``) and :class:`LiftDecoy` (``seed + 1``), the same
    draws, also saying which controller recorded each episode (the file's ``expert`` and ``other`` filter keys).
    """
    expert = LiftExpert(env, noise_std=settings.noise_std, seed=settings.seed)
    other = LiftDecoy(env, noise_std=settings.noise_std, seed=settings.seed + 1)
    choice = np.random.default_rng(settings.seed)
    is_expert = [bool(choice.random() < settings.expert_fraction) for _ in range(settings.n_episodes)]
    episodes = [
        rollout_episode(env, expert if by_expert else other, seed=settings.seed + index)
        for index, by_expert in enumerate(is_expert)
    ]
    return episodes, is_expert


def _metadata(settings: MixtureSettings, check: ControllerCheck, success: list[bool]) -> dict[str, Any]:
    """The file's ``data.attrs`` besides ``env_args`` and ``total``: what a Minari dataset of the recipe would say."""
    ref_min_score, ref_max_score = LIFT_RECIPE.ref_scores(check)
    return dict(
        algorithm_name=(
            f"{LiftExpert.__name__}/{LiftDecoy.__name__}(expert_fraction={settings.expert_fraction}, "
            f"noise_std={settings.noise_std})"
        ),
        code_permalink=LIFT_RECIPE.code_permalink,
        ref_min_score=ref_min_score,
        ref_max_score=ref_max_score,
        description=(
            f"{settings.n_episodes} episodes on {LIFT_ENV_ID} ({LIFT_RECIPE.task}): a share {settings.expert_fraction} by "
            f"{LIFT_RECIPE.expert_does}, the rest by {LIFT_RECIPE.other_does}, both with Gaussian action noise "
            f"(std {settings.noise_std}). Success rate of the episodes: {float(np.mean(success)):.2f}. "
            f"Checked before recording: {check.summary()}."
        ),
    )


# The gymnasium id of this family (sb3_expo.tasks registers it).
ENV_REGISTRATIONS = [dict(id=LIFT_ENV_ID, entry_point=f"{__name__}:create_lift", max_episode_steps=LIFT_MAX_EPISODE_STEPS)]
