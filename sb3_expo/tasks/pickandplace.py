"""
The FetchPickAndPlace task ended at success, and the mixed-quality offline dataset its scripted
controllers record, built locally (no download). A held-out task of the learning benchmark: nothing
of EXPO's recipe was tuned on it.

The task (:data:`PICKANDPLACE_ENV_ID`, :func:`make_pickandplace_env`) is Gymnasium-Robotics'
FetchPickAndPlace with its sparse reward, the episode ended at success and the block never starting at
(or next to) the goal. Unlike FetchPush the fingers move (the 4th action) and half of the goals float
in the air, so the block must be grasped, not pushed. The expert flies above the block with open
fingers, goes down around it, closes them and carries the block to the goal; Gaussian action noise
makes its episodes diverse. A decoy, the same controller carrying the block to random other places
and dropping it there, makes up the rest of the data: its episodes share the expert's approach and
grasp and differ in where the block goes, so that imitation alone is mediocre while the expert
episodes show the critic the task. ``python -m sb3_expo.tasks sb3_expo/pickandplace-noisy-v0`` builds
the dataset into ``$MINARI_DATASETS_PATH``.
"""

from typing import Any

import gymnasium as gym
import numpy as np

from sb3_expo.envs import GoalEnvSuccess, TerminateOnSuccess, import_robotics_dependency
from sb3_expo.tasks.fetchpush import distance_to_segment
from sb3_expo.tasks.recording import MixtureRecipe, MixtureSettings

# ------------------------------------------------------------------------------------------------- task

PICKANDPLACE_ENV_ID = "sb3_expo/FetchPickAndPlaceTerminal-v0"

# FetchPickAndPlace's own limit.
PICKANDPLACE_MAX_EPISODE_STEPS = 50

# Least distance from the block to the goal at reset (Fetch counts 5 cm as reached): every episode needs
# the block moved, not nudged (FetchPickAndPlace samples goals on the block's table spot too).
PICKANDPLACE_MIN_GOAL_DISTANCE = 0.1

# The offline dataset's id and defaults.
PICKANDPLACE_DATASET_ID = "sb3_expo/pickandplace-noisy-v0"
DEFAULT_N_EPISODES = 400
DEFAULT_EXPERT_FRACTION = 0.5
DEFAULT_NOISE_STD = 0.3

# Before writing, the expert (with the dataset's noise) and random actions run this many episodes each;
# the build stops if the expert succeeds less often than MIN_EXPERT_SUCCESS or random actions more
# often than MAX_RANDOM_SUCCESS.
DEFAULT_CHECK_EPISODES = 20
MIN_EXPERT_SUCCESS = 0.8
MAX_RANDOM_SUCCESS = 0.1


def create_pickandplace(min_goal_distance: float = PICKANDPLACE_MIN_GOAL_DISTANCE, **kwargs: Any) -> gym.Env:
    """
    Entry point of :data:`PICKANDPLACE_ENV_ID`: Gymnasium-Robotics' ``FetchPickAndPlace``
    (``FetchPickAndPlace-v4``'s MuJoCo env) with a boolean ``info["is_success"]``, the block at least
    ``min_goal_distance`` from the goal at reset (:class:`GoalEnvSuccess`) and termination at success
    (:class:`TerminateOnSuccess`). Prefer :func:`make_pickandplace_env` or ``gym.make``, which add the
    time limit.

    :param min_goal_distance: least distance from the block to the goal at reset
    :param kwargs: ``MujocoFetchPickAndPlaceEnv`` arguments (the registered one keeps the sparse reward)
    :return: the environment, without time limit
    """
    import_robotics_dependency("mujoco")
    pick_and_place = import_robotics_dependency("gymnasium_robotics.envs.fetch.pick_and_place")
    env = pick_and_place.MujocoFetchPickAndPlaceEnv(**kwargs)
    return TerminateOnSuccess(GoalEnvSuccess(env, min_goal_distance=min_goal_distance))


def make_pickandplace_env(max_episode_steps: int = PICKANDPLACE_MAX_EPISODE_STEPS, **kwargs: Any) -> gym.Env:
    """
    The sparse-reward grasping task: FetchPickAndPlace (grasp a block on a table and bring it to a goal
    position, on the table or up to 45 cm above it; 4-D action, the gripper's displacement and the
    fingers' command, positive opening them), its sparse reward (-1 per step, 0 once the block is within
    5 cm of the goal) and the episode ended there, so the return is minus the steps taken. The block
    starts at least 10 cm from the goal. Dict observations (``observation`` has 25 entries,
    ``achieved_goal`` and ``desired_goal`` 3 each): use ``"MultiInputPolicy"``.

    :param max_episode_steps: time limit (truncation); FetchPickAndPlace's own 50 by default
    :param kwargs: overrides of ``MujocoFetchPickAndPlaceEnv`` arguments (e.g. ``render_mode="rgb_array"``)
    :return: the environment, as ``gym.make(PICKANDPLACE_ENV_ID, max_episode_steps=...)``
    :raises ImportError: Gymnasium-Robotics or MuJoCo is not installed (the message names the extra)
    """
    return gym.make(PICKANDPLACE_ENV_ID, max_episode_steps=max_episode_steps, **kwargs)


# ------------------------------------------------------------------------------------------ offline dataset

# Finger commands: FetchPickAndPlace moves both fingers by the 4th action, positive apart.
OPEN, CLOSE = 1.0, -1.0


class PickAndPlaceExpert:
    """
    Scripted FetchPickAndPlace controller, a small state machine read off each observation (no memory):

    1. holding the block (the gripper at the block and the fingers closed on it, narrower than
       ``held_width`` apart): carry it to the target with the fingers closed, moving the gripper by the
       block's remaining displacement;
    2. above the block (within ``align`` sideways): with open fingers, go down to it; once at its
       height (within ``grasp_height``), close the fingers;
    3. low but elsewhere: rise to ``hover`` above the block first, so as not to knock it on the way;
    4. otherwise: fly to the point ``hover`` above the block, opening the fingers.

    The displacement action is ``gain`` times the gripper's displacement to its waypoint (an action of
    1 moves the gripper's target 5 cm), the finger command fully open or closed; Gaussian noise is
    added to all four, and the action clipped to [-1, 1]. The fingers keep closing under noise (a
    command of -0.5 still closes them), so the noise mostly bends the paths.

    :param env: a FetchPickAndPlace environment (any wrapping); its action bounds are read once
    :param noise_std: standard deviation of the Gaussian noise on the four actions
    :param seed: seed of the noise generator
    :param gain: proportional gain
    :param hover: height above the block's centre to travel at before going down
    :param align: largest sideways offset of the gripper from the block that still goes down
    :param grasp_height: largest height of the gripper above the block's centre that closes the fingers
    :param held_width: the fingers' summed opening below which a gripper at the block holds it (about
        0.05 on the 5 cm block, 0.1 when open)
    :param held_distance: largest distance from the gripper to the block's centre that counts as at it
    """

    def __init__(
        self,
        env: gym.Env,
        noise_std: float = DEFAULT_NOISE_STD,
        seed: int | None = None,
        gain: float = 10.0,
        hover: float = 0.05,
        align: float = 0.02,
        grasp_height: float = 0.01,
        held_width: float = 0.07,
        min_held_width: float = 0.02,
        held_distance: float = 0.035,
    ):
        self.action_space = env.action_space
        self.noise_std, self.gain, self.hover, self.align = noise_std, gain, hover, align
        self.grasp_height, self.held_distance = grasp_height, held_distance
        self.held_width, self.min_held_width = held_width, min_held_width
        self.rng = np.random.default_rng(seed)

    def target(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """Where to bring the block: the goal. Subclasses bring it elsewhere."""
        return observation["desired_goal"]

    def holds(self, observation: dict[str, np.ndarray]) -> bool:
        """Whether the gripper holds the block: at the block, with the fingers closed on it."""
        state = observation["observation"]
        at_block = np.linalg.norm(state[0:3] - state[3:6]) < self.held_distance
        return bool(at_block and self.min_held_width < state[9] + state[10] < self.held_width)

    def plan(self, observation: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """
        Where the gripper should head now, and the finger command.

        :param observation: one (not batched) FetchPickAndPlace observation dict
        :return: the waypoint's ``(x, y, z)`` and :data:`OPEN` or :data:`CLOSE`
        """
        state = observation["observation"]
        gripper, block = state[0:3], state[3:6]
        if self.holds(observation):
            return gripper + (self.target(observation) - block), CLOSE
        sideways = float(np.linalg.norm(gripper[:2] - block[:2]))
        low = gripper[2] < block[2] + self.hover / 2
        if sideways < self.align:
            return block, CLOSE if gripper[2] - block[2] < self.grasp_height else OPEN
        if low and sideways < 2 * self.align:  # nearly there: centre over the block without rising
            return np.r_[block[:2], gripper[2]], OPEN
        if low:
            return np.r_[gripper[:2], block[2] + self.hover], OPEN
        return block + np.r_[0.0, 0.0, self.hover], OPEN

    def __call__(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """
        :param observation: one (not batched) FetchPickAndPlace observation dict
        :return: the action, clipped to the action space
        """
        waypoint, fingers = self.plan(observation)
        action = np.r_[self.gain * (waypoint - observation["observation"][0:3]), fingers]
        if self.noise_std > 0:
            action += self.rng.normal(0.0, self.noise_std, size=4)
        return np.clip(action, self.action_space.low, self.action_space.high).astype(self.action_space.dtype)


class PickAndPlaceDecoy(PickAndPlaceExpert):
    """
    Suboptimal data: the same controller carrying the block to random places instead of the goal, and
    dropping it there (the fingers open and the gripper rises for ``release_steps`` steps) before
    picking it up again for the next place. The places are drawn where FetchPickAndPlace draws its goals
    (within ``target_range`` of the gripper's start, on the table or up to 45 cm above it) such that,
    seen from above, the straight carry there passes no closer than ``min_goal_distance`` to the
    episode's goal: neither the carry nor the fall of the dropped block crosses the goal, so the decoy
    seldom succeeds by chance.

    :param env: a FetchPickAndPlace environment
    :param reach_target: distance of the block to a decoy place that counts as arrived there
    :param min_goal_distance: least distance, from above, between the goal and the carry to a decoy place
    :param release_steps: steps the fingers stay open after arriving
    :param kwargs: :class:`PickAndPlaceExpert` arguments (``noise_std``, ``seed``, ...)
    """

    def __init__(
        self,
        env: gym.Env,
        reach_target: float = 0.04,
        min_goal_distance: float = 0.1,
        release_steps: int = 3,
        **kwargs: Any,
    ):
        super().__init__(env, **kwargs)
        fetch = env.unwrapped
        self.centre = np.asarray(fetch.initial_gripper_xpos[:2], dtype=np.float64)  # type: ignore[attr-defined]
        self.target_range = float(fetch.target_range)  # type: ignore[attr-defined]
        self.reach_target, self.min_goal_distance, self.release_steps = reach_target, min_goal_distance, release_steps
        self.table_height = float(fetch.height_offset)  # type: ignore[attr-defined]  # the block's height on the table
        self._target: np.ndarray | None = None
        self._release = 0

    def reset(self) -> None:
        """Forget the last episode's decoy place and drop (called before every episode)."""
        self._target, self._release = None, 0

    def target(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        block, goal = observation["achieved_goal"], observation["desired_goal"]
        if self._target is None:
            for _ in range(100):  # a place whose carry passes the goal no closer than min_goal_distance, from above
                place = self.centre + self.rng.uniform(-self.target_range, self.target_range, size=2)
                if distance_to_segment(goal[:2], block[:2], place) >= self.min_goal_distance:
                    break
            height = self.rng.uniform(0.0, 0.45) if self.rng.random() < 0.5 else 0.0  # as Fetch's goals
            self._target = np.r_[place, self.table_height + height]
        return self._target

    def plan(self, observation: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        if self._release == 0 and np.linalg.norm(observation["achieved_goal"] - self.target(observation)) < self.reach_target:
            self._target, self._release = None, self.release_steps  # arrived: drop the block here
        if self._release > 0:
            self._release -= 1
            return observation["observation"][0:3] + np.r_[0.0, 0.0, self.hover], OPEN
        return super().plan(observation)


PICKANDPLACE_RECIPE = MixtureRecipe(
    make_env=make_pickandplace_env,
    expert=PickAndPlaceExpert,
    other=PickAndPlaceDecoy,
    defaults=MixtureSettings(
        DEFAULT_N_EPISODES, DEFAULT_EXPERT_FRACTION, DEFAULT_NOISE_STD, check_episodes=DEFAULT_CHECK_EPISODES
    ),
    min_expert_success=MIN_EXPERT_SUCCESS,
    max_random_success=MAX_RANDOM_SUCCESS,
    # random actions: -50, the block never reaches the goal; the noisy expert's measured mean return
    ref_scores=lambda check: (check.random_mean_return, check.expert_mean_return),
    code_permalink=f"{__name__}.build_pickandplace_dataset",
    task=(
        "FetchPickAndPlace, sparse reward -1 per step and 0 at success, termination at success, the block starting "
        "at least 10 cm from the goal"
    ),
    expert_does="a scripted controller that grasps the block from above and carries it to the goal",
    other_does="the same controller carrying it to random other places and dropping it there",
)


def build_pickandplace_dataset(dataset_id: str = PICKANDPLACE_DATASET_ID, overwrite: bool = False, **settings: Any) -> Any:
    """
    Record a mixed-quality offline dataset on :data:`PICKANDPLACE_ENV_ID` (FetchPickAndPlace
    with its sparse -1/0 reward, ended at success) as a local Minari dataset: ``expert_fraction`` of the
    episodes come from :class:`PickAndPlaceExpert` (they grasp the block and bring it to the goal in
    about 27 steps, 19 without noise), the rest from :class:`PickAndPlaceDecoy` (it carries the block
    about and drops it for the 50 steps, and never succeeded in 100 episodes). The decoy's episodes share
    the expert's approach and grasp, so imitation alone is mediocre on the default data (400 episodes,
    45% successful): the benchmark's diffusion base after 10k imitation steps succeeded in 0-15% of
    episodes (3 seeds).

    The dataset lives under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``) and loads with
    ``sb3_expo.data.load_minari(dataset_id)`` (Dict observations); its ``env_spec`` recreates the task.
    An episode ends at success (a terminal with reward 0 after rewards of -1) or at the time limit.

    :param dataset_id: Minari id to write (``namespace/name-vN``)
    :param overwrite: rebuild the dataset if ``dataset_id`` exists; otherwise the existing one is reused
        (with a warning if its number of episodes differs)
    :param settings: :class:`~sb3_expo.tasks.recording.MixtureSettings` fields that differ from
        ``PICKANDPLACE_RECIPE.defaults``: ``n_episodes`` (400: about 16k transitions, recorded in under a
        minute), ``expert_fraction`` (0.5; 1 records expert data only), ``noise_std`` (0.3: the expert's
        success is 0.95-1.0 at 0.3 and about 0.55 at 0.5, where noise spoils the grasps), ``seed`` (0:
        episode ``i`` resets with ``seed + i``, and the controllers are seeded from it) and
        ``check_episodes`` (20: before recording, the noisy expert and random actions run this many
        episodes each, and the build stops unless the expert succeeds in at least
        :data:`MIN_EXPERT_SUCCESS` of them and random actions in at most :data:`MAX_RANDOM_SUCCESS`)
    :return: the ``minari.MinariDataset``
    :raises ImportError: Minari, Gymnasium-Robotics or MuJoCo is not installed
    :raises RuntimeError: the check failed (nothing is written)
    """
    return PICKANDPLACE_RECIPE.build(dataset_id, overwrite, **settings)


# The gymnasium id of this family (sb3_expo.tasks registers it).
ENV_REGISTRATIONS = [
    dict(
        id=PICKANDPLACE_ENV_ID,
        entry_point=f"{__name__}:create_pickandplace",
        max_episode_steps=PICKANDPLACE_MAX_EPISODE_STEPS,
        kwargs=dict(reward_type="sparse", min_goal_distance=PICKANDPLACE_MIN_GOAL_DISTANCE),
    ),
]
# The dataset built locally: id -> builder.
LOCAL_DATASETS = {PICKANDPLACE_DATASET_ID: build_pickandplace_dataset}
