"""
The FetchPush task ended at success, and the mixed-quality offline dataset its scripted controllers
record, built locally (no download).

The task (:data:`FETCHPUSH_ENV_ID`, :func:`make_fetchpush_env`) is Gymnasium-Robotics' FetchPush with
its sparse reward, the episode ended at success, and the block never starting at (or next to) the goal.
The expert moves the gripper (its fingers are blocked shut) above a point behind the block, on the
side away from the goal, lowers it to the block's height and pushes the block along the line to the
goal, correcting sideways drift; Gaussian action noise makes its episodes diverse. A decoy, the same
controller pushing the block towards random other places on the table instead, makes up the rest of
the data, so that imitation alone is mediocre while the expert episodes show the critic the task.
``python -m sb3_expo.tasks sb3_expo/fetchpush-noisy-v0`` builds the dataset into ``$MINARI_DATASETS_PATH``.
"""

from typing import Any

import gymnasium as gym
import numpy as np

from sb3_expo.envs import GoalEnvSuccess, TerminateOnSuccess, import_robotics_dependency
from sb3_expo.tasks.recording import MixtureRecipe, MixtureSettings

# ------------------------------------------------------------------------------------------------- task

FETCHPUSH_ENV_ID = "sb3_expo/FetchPushTerminal-v0"

# FetchPush's own limit; the noisy expert needs about 25 steps.
FETCHPUSH_MAX_EPISODE_STEPS = 50

# Least distance from the block to the goal at reset (FetchPush counts 5 cm as reached): every episode
# needs a real push, not a nudge (in 22% of FetchPush's resets the block starts nearer).
FETCHPUSH_MIN_GOAL_DISTANCE = 0.1


# The offline dataset's id and defaults.
FETCHPUSH_DATASET_ID = "sb3_expo/fetchpush-noisy-v0"
DEFAULT_N_EPISODES = 400
DEFAULT_EXPERT_FRACTION = 0.4
DEFAULT_NOISE_STD = 0.3

# Before writing, the expert (with the dataset's noise) and random actions run this many episodes each;
# the build stops if the expert succeeds less often than MIN_EXPERT_SUCCESS or random actions more
# often than MAX_RANDOM_SUCCESS.
DEFAULT_CHECK_EPISODES = 20
MIN_EXPERT_SUCCESS = 0.8
MAX_RANDOM_SUCCESS = 0.1


def create_fetchpush(min_goal_distance: float = FETCHPUSH_MIN_GOAL_DISTANCE, **kwargs: Any) -> gym.Env:
    """
    Entry point of :data:`FETCHPUSH_ENV_ID`: Gymnasium-Robotics' ``FetchPush`` (``FetchPush-v4``'s
    MuJoCo env) with a boolean ``info["is_success"]``, the block at least ``min_goal_distance`` from
    the goal at reset (:class:`GoalEnvSuccess`) and termination at success
    (:class:`TerminateOnSuccess`). Prefer :func:`make_fetchpush_env` or ``gym.make``, which add the
    time limit.

    :param min_goal_distance: least distance from the block to the goal at reset
    :param kwargs: ``MujocoFetchPushEnv`` arguments (the registered one keeps the sparse reward)
    :return: the environment, without time limit
    """
    import_robotics_dependency("mujoco")
    push = import_robotics_dependency("gymnasium_robotics.envs.fetch.push")
    return TerminateOnSuccess(GoalEnvSuccess(push.MujocoFetchPushEnv(**kwargs), min_goal_distance=min_goal_distance))


def make_fetchpush_env(max_episode_steps: int = FETCHPUSH_MAX_EPISODE_STEPS, **kwargs: Any) -> gym.Env:
    """
    The sparse-reward manipulation task: FetchPush (push a block on a table to a goal position with
    the closed gripper; 4-D action, the gripper's displacement and an ignored finger command), its
    sparse reward (-1 per step, 0 once the block is within 5 cm of the goal) and the episode ended
    there, so the return is minus the steps taken. The block starts at least 10 cm from the goal
    (FetchPush alone would start some episodes already solved). Dict observations (``observation`` has 25 entries,
    ``achieved_goal`` and ``desired_goal`` 3 each): use ``"MultiInputPolicy"``.

    :param max_episode_steps: time limit (truncation); FetchPush's own 50 by default
    :param kwargs: overrides of ``MujocoFetchPushEnv`` arguments (e.g. ``render_mode="rgb_array"``)
    :return: the environment, as ``gym.make(FETCHPUSH_ENV_ID, max_episode_steps=...)``
    :raises ImportError: Gymnasium-Robotics or MuJoCo is not installed (the message names the extra)
    """
    return gym.make(FETCHPUSH_ENV_ID, max_episode_steps=max_episode_steps, **kwargs)


# ------------------------------------------------------------------------------------------ offline dataset


class FetchPushExpert:
    """
    Scripted FetchPush controller, a small state machine read off each observation (no memory):

    1. in pushing position (behind the block, at its height, within ``lateral_tolerance`` of the line
       from the block to the target): move towards the point ``standoff`` short of the target, steering
       back onto the line (the gripper meets the block on the way and pushes it there);
    2. above the point ``approach`` behind the block (within ``reach``): go down to the block's height;
    3. low but elsewhere: rise ``lift`` above the block first, so as not to knock it on the way;
    4. otherwise: fly to the point above the spot behind the block.

    The action is ``gain`` times the gripper's displacement to its waypoint (an action of 1 moves the
    gripper's target 5 cm) plus Gaussian noise, clipped to [-1, 1]; the finger command is 0 (FetchPush
    blocks the fingers).

    :param env: a FetchPush environment (any wrapping); its action bounds are read once
    :param noise_std: standard deviation of the Gaussian noise on the three displacement actions
    :param seed: seed of the noise generator
    :param standoff: distance from the block's centre to the gripper when pushing (the block is 5 cm wide)
    :param approach: distance behind the block's centre where the gripper goes down (far enough not to
        land on the block)
    :param gain: proportional gain
    :param lateral_tolerance: largest sideways offset from the pushing line that still pushes
    :param height_tolerance: largest height of the gripper above the block's centre that still pushes
    :param reach: distance to the point behind the block that counts as there
    :param lift: height above the block to travel at
    """

    def __init__(
        self,
        env: gym.Env,
        noise_std: float = DEFAULT_NOISE_STD,
        seed: int | None = None,
        standoff: float = 0.05,
        approach: float = 0.08,
        gain: float = 10.0,
        lateral_tolerance: float = 0.04,
        height_tolerance: float = 0.03,
        reach: float = 0.025,
        lift: float = 0.08,
    ):
        self.action_space = env.action_space
        self.noise_std, self.gain, self.standoff, self.approach, self.lift = noise_std, gain, standoff, approach, lift
        self.lateral_tolerance, self.height_tolerance, self.reach = lateral_tolerance, height_tolerance, reach
        self.rng = np.random.default_rng(seed)

    def target(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """Where to push the block: the goal. Subclasses push elsewhere."""
        return observation["desired_goal"]

    def waypoint(self, gripper: np.ndarray, block: np.ndarray, target: np.ndarray) -> np.ndarray:
        """
        Where the gripper should head now.

        :param gripper: the gripper's ``(x, y, z)``
        :param block: the block's ``(x, y, z)``
        :param target: where the block should go (its ``z`` is ignored)
        :return: the waypoint's ``(x, y, z)``
        """
        to_target = target[:2] - block[:2]
        direction = to_target / max(float(np.linalg.norm(to_target)), 1e-6)
        offset = gripper[:2] - block[:2]
        along = float(offset @ direction)
        sideways = offset - along * direction
        behind = block[:2] - self.approach * direction
        low, high = block[2], block[2] + self.lift
        if along < -0.02 and np.linalg.norm(sideways) < self.lateral_tolerance and gripper[2] < low + self.height_tolerance:
            return np.r_[target[:2] - (self.standoff - 0.01) * direction - sideways, low]
        if np.linalg.norm(gripper[:2] - behind) < self.reach:
            return np.r_[behind, low]
        if gripper[2] < low + 0.05:
            return np.r_[gripper[:2], high + 0.02]
        return np.r_[behind, high]

    def __call__(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """
        :param observation: one (not batched) FetchPush observation dict
        :return: the action, clipped to the action space
        """
        gripper, block = observation["observation"][0:3], observation["observation"][3:6]
        action = np.zeros(self.action_space.shape, dtype=np.float64)
        action[:3] = self.gain * (self.waypoint(gripper, block, self.target(observation)) - gripper)
        if self.noise_std > 0:
            action[:3] += self.rng.normal(0.0, self.noise_std, size=3)
        return np.clip(action, self.action_space.low, self.action_space.high).astype(self.action_space.dtype)


class FetchPushDecoy(FetchPushExpert):
    """
    Suboptimal data: the same controller pushing the block towards random places on the table instead
    of the goal, a new one each time the block gets within ``reach_target`` of the last. The places are
    drawn where FetchPush draws its goals (within ``target_range`` of the gripper's start) such that the
    straight push there passes no closer than ``min_goal_distance`` to the episode's goal, so the decoy
    seldom succeeds by chance (it still does when noise or a bump carries the block there).

    :param env: a FetchPush environment
    :param reach_target: distance of the block to a decoy place that counts as arrived there
    :param min_goal_distance: least distance between the goal and the push to a decoy place
    :param kwargs: :class:`FetchPushExpert` arguments (``noise_std``, ``seed``, ...)
    """

    def __init__(self, env: gym.Env, reach_target: float = 0.04, min_goal_distance: float = 0.1, **kwargs: Any):
        super().__init__(env, **kwargs)
        fetch = env.unwrapped
        self.centre = np.asarray(fetch.initial_gripper_xpos[:2], dtype=np.float64)  # type: ignore[attr-defined]
        self.target_range = float(fetch.target_range)  # type: ignore[attr-defined]
        self.reach_target, self.min_goal_distance = reach_target, min_goal_distance
        self._target: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the last episode's decoy place (called before every episode)."""
        self._target = None

    def target(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        block, goal = observation["achieved_goal"], observation["desired_goal"]
        if self._target is None or np.linalg.norm(block[:2] - self._target[:2]) < self.reach_target:
            for _ in range(100):  # a place whose straight push passes the goal no closer than min_goal_distance
                place = self.centre + self.rng.uniform(-self.target_range, self.target_range, size=2)
                if distance_to_segment(goal[:2], block[:2], place) >= self.min_goal_distance:
                    break
            self._target = np.r_[place, block[2]]
        return self._target


def distance_to_segment(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    """Distance from ``point`` to the segment from ``start`` to ``end``."""
    segment = end - start
    fraction = float(np.clip((point - start) @ segment / max(float(segment @ segment), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(point - (start + fraction * segment)))


FETCHPUSH_RECIPE = MixtureRecipe(
    make_env=make_fetchpush_env,
    expert=FetchPushExpert,
    other=FetchPushDecoy,
    defaults=MixtureSettings(
        DEFAULT_N_EPISODES, DEFAULT_EXPERT_FRACTION, DEFAULT_NOISE_STD, check_episodes=DEFAULT_CHECK_EPISODES
    ),
    min_expert_success=MIN_EXPERT_SUCCESS,
    max_random_success=MAX_RANDOM_SUCCESS,
    # random actions: -50, the block never reaches the goal; the noisy expert's measured mean return
    ref_scores=lambda check: (check.random_mean_return, check.expert_mean_return),
    code_permalink=f"{__name__}.build_fetchpush_dataset",
    task=(
        "FetchPush, sparse reward -1 per step and 0 at success, termination at success, the block starting at "
        "least 10 cm from the goal"
    ),
    expert_does="a scripted controller that pushes the block from behind to the goal",
    other_does="the same controller pushing it to random other places on the table",
)


def build_fetchpush_dataset(dataset_id: str = FETCHPUSH_DATASET_ID, overwrite: bool = False, **settings: Any) -> Any:
    """
    Record a mixed-quality offline dataset on :data:`FETCHPUSH_ENV_ID` (FetchPush with
    its sparse -1/0 reward, ended at success) as a local Minari dataset: ``expert_fraction`` of the
    episodes come from :class:`FetchPushExpert` (they push the block to the goal in about 20 steps),
    the rest from :class:`FetchPushDecoy` (it pushes the block about the table for the 50 steps).
    Imitation alone is mediocre on the default data: a behaviour-cloning MLP trained on all of it
    succeeded in 30-40% of episodes, one trained on its successful episodes alone in 55-65%.

    The dataset lives under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``) and loads with
    ``sb3_expo.data.load_minari(dataset_id)`` (Dict observations); its ``env_spec`` recreates the task.
    An episode ends at success (a terminal with reward 0 after rewards of -1) or at the time limit.

    :param dataset_id: Minari id to write (``namespace/name-vN``)
    :param overwrite: rebuild the dataset if ``dataset_id`` exists; otherwise the existing one is reused
        (with a warning if its number of episodes differs)
    :param settings: :class:`~sb3_expo.tasks.recording.MixtureSettings` fields that differ from
        ``FETCHPUSH_RECIPE.defaults``: ``n_episodes`` (400: about 15k transitions, recorded in about a
        quarter of a minute), ``expert_fraction`` (0.4; 1 records expert data only), ``noise_std`` (0.3:
        the expert's success is about 0.97 at 0.3 and 0.8 at 0.5), ``seed`` (0: episode ``i`` resets with
        ``seed + i``, and the controllers are seeded from it) and ``check_episodes`` (20: before
        recording, the noisy expert and random actions run this many episodes each, and the build stops
        unless the expert succeeds in at least :data:`MIN_EXPERT_SUCCESS` of them and random actions in
        at most :data:`MAX_RANDOM_SUCCESS`)
    :return: the ``minari.MinariDataset``
    :raises ImportError: Minari, Gymnasium-Robotics or MuJoCo is not installed
    :raises RuntimeError: the check failed (nothing is written)
    """
    return FETCHPUSH_RECIPE.build(dataset_id, overwrite, **settings)


# The gymnasium id of this family (sb3_expo.tasks registers it).
ENV_REGISTRATIONS = [
    dict(
        id=FETCHPUSH_ENV_ID,
        entry_point=f"{__name__}:create_fetchpush",
        max_episode_steps=FETCHPUSH_MAX_EPISODE_STEPS,
        kwargs=dict(reward_type="sparse", min_goal_distance=FETCHPUSH_MIN_GOAL_DISTANCE),
    ),
]
# The dataset built locally: id -> builder.
LOCAL_DATASETS = {FETCHPUSH_DATASET_ID: build_fetchpush_dataset}
