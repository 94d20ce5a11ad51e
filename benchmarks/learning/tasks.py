"""
The benchmark's tasks: an environment, an offline dataset that is built locally, and the settings every
method runs with on it. Add a task with ``register_task(Task(...))``; ``run.py --tasks <name>`` then runs it.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from sb3_expo.tasks.fetchpush import FETCHPUSH_DATASET_ID, build_fetchpush_dataset, make_fetchpush_env
from sb3_expo.tasks.lift import LIFT_DATASET, build_lift_dataset, make_lift_env
from sb3_expo.tasks.pickandplace import PICKANDPLACE_DATASET_ID, build_pickandplace_dataset, make_pickandplace_env
from sb3_expo.tasks.pointmaze import (
    POINTMAZE_DATASET_ID,
    POINTMAZE_LARGE_DATASET_ID,
    POINTMAZE_MEDIUM_DATASET_ID,
    build_pointmaze_dataset,
    build_pointmaze_large_dataset,
    build_pointmaze_medium_dataset,
    make_pointmaze_env,
    make_pointmaze_large_env,
    make_pointmaze_medium_env,
)


@dataclass(frozen=True)
class Task:
    """
    One benchmark task. Every method gets the same data, env steps, batch size and UTD (``shared``) on it;
    ``expo`` holds what only EXPO has (and what RLPD copies from it: ``n_critics``, ``critic_subset_size``,
    ``policy_delay``).

    :param name: the name on the command line and in the results
    :param make_env: creates one training or evaluation env; it must report ``info["is_success"]``
    :param dataset_id: the offline data, as ``sb3_expo.data.load_offline_dataset`` names it: a Minari id (under
        ``$MINARI_DATASETS_PATH``) or the path of a D4RL / robomimic ``.hdf5`` file (an ``os.PathLike`` may compute
        it when used, as ``lift``'s follows ``$MINARI_DATASETS_PATH``)
    :param build_dataset: creates that dataset locally if it is missing (called once, before any job starts)
    :param reward_shift: added to every sampled reward, offline and online (-1: a cost per step until the goal)
    :param online_steps: env steps of online learning per job (``--steps`` overrides it)
    :param pretrain_steps: imitation steps of EXPO's base policy before online learning (``expo-o2o``,
        ``expo-o2o-base``, ``bc``)
    :param eval_interval: env steps between two evaluations (and checkpoints)
    :param eval_episodes: episodes per evaluation
    :param net_arch: hidden layers of every critic and actor
    :param shared: SB3 arguments of every method (``batch_size``, ``gradient_steps`` = UTD, ``learning_starts``, ...)
    :param expo: EXPO's own compute-size arguments (ensemble, candidates, policy delay); its ``policy_kwargs``
        (denoiser size) are merged with ``net_arch``. Nothing of the recipe: ``expo-o2o`` runs EXPO's defaults
    :param tuned: the recipe tuned by hand on this task (``tau``, ``edit_scale``, ``critic_steps``: ``expo-tuned``);
        empty on the held-out tasks, which nobody tunes on
    :param split: ``"tuning"`` (the recipe was chosen on it) or ``"held-out"`` (never tuned on: the generalization test)
    """

    name: str
    make_env: Callable[[], gym.Env]
    dataset_id: str | os.PathLike
    build_dataset: Callable[[], Any]
    reward_shift: float = 0.0
    online_steps: int = 5000
    pretrain_steps: int = 3000
    eval_interval: int = 1000
    eval_episodes: int = 20
    net_arch: list[int] = field(default_factory=lambda: [256, 256])
    shared: dict[str, Any] = field(default_factory=dict)
    expo: dict[str, Any] = field(default_factory=dict)
    tuned: dict[str, Any] = field(default_factory=dict)
    split: str = "tuning"


TASKS: dict[str, Task] = {}

# The compute budget every method runs with on the CPU-sized tasks: batch 128, UTD 2, no random warm-up (the
# offline data is there from the start). Everything else is each algorithm's default.
SMALL_BUDGET = dict(learning_starts=0, batch_size=128, gradient_steps=2)


def register_task(task: Task) -> Task:
    """Make ``task`` available by name; registering a name again replaces the task (handy in tests)."""
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"Unknown task '{name}': registered tasks are {sorted(TASKS)}")
    return TASKS[name]


# The same CPU-sized EXPO on every task, so that a job fits on one core: small networks, UTD 2, N = K = 4.
SMALL_EXPO = dict(
    policy_delay=2,
    n_critics=5,
    n_base_samples=4,
    n_edit_samples=4,
    policy_kwargs=dict(denoiser_width=64, denoiser_blocks=2),
)

# The demo task: sparse PointMaze U-maze, mixed-quality data (10% expert), the settings of
# examples/offline_to_online_pointmaze.py (small networks and UTD 2, so a job fits on one CPU core).
register_task(
    Task(
        name="pointmaze",
        make_env=make_pointmaze_env,
        dataset_id=POINTMAZE_DATASET_ID,
        build_dataset=build_pointmaze_dataset,
        reward_shift=-1.0,
        online_steps=5000,
        pretrain_steps=3000,
        eval_interval=1000,
        eval_episodes=20,
        net_arch=[64, 64],
        shared=dict(SMALL_BUDGET),
        expo=dict(SMALL_EXPO),
        tuned=dict(tau=0.02, edit_scale=0.5, critic_steps=2000),
    )
)

# A longer horizon: the large maze's 15-cell path (the noisy expert needs about 280 of the 500 steps), from a
# small noisy dataset (40 episodes, 8 of them successful) that imitation alone rarely solves.
register_task(
    Task(
        name="pointmaze-large",
        make_env=make_pointmaze_large_env,
        dataset_id=POINTMAZE_LARGE_DATASET_ID,
        build_dataset=build_pointmaze_large_dataset,
        reward_shift=-1.0,
        online_steps=5000,  # about 10-15 episodes: a CPU budget; on a GPU extend it with --steps
        pretrain_steps=3000,
        eval_interval=1000,
        eval_episodes=10,
        net_arch=[64, 64],
        shared=dict(SMALL_BUDGET),
        expo=dict(SMALL_EXPO),
        tuned=dict(tau=0.02, edit_scale=0.5, critic_steps=2000),
    )
)

# Sparse-reward manipulation, the closest local stand-in for the paper's robomimic tasks: FetchPush (-1 per
# step until the block is at the goal, 50 steps) with a scripted expert's and a decoy's noisy pushes (40% expert).
# Pushing needs a better-fitted base than the mazes: imitation alone reached 0.00 after 3000 steps of a width-64
# denoiser, 0.13 after 10k, and 0.30 / 0.20 after 10k / 20k steps of a width-128 one (30 episodes, seed 0).
register_task(
    Task(
        name="fetchpush",
        make_env=make_fetchpush_env,
        dataset_id=FETCHPUSH_DATASET_ID,
        build_dataset=build_fetchpush_dataset,
        reward_shift=0.0,
        online_steps=5000,
        pretrain_steps=10_000,
        eval_interval=1000,
        eval_episodes=20,
        net_arch=[64, 64],
        shared=dict(SMALL_BUDGET),
        expo={**SMALL_EXPO, "policy_kwargs": dict(denoiser_width=128, denoiser_blocks=2)},
        tuned=dict(tau=0.02, edit_scale=0.3, critic_steps=2000),
    )
)


# Held-out tasks: never tuned on. They test whether EXPO's defaults (``expo-o2o``) carry over to tasks nobody
# chose the recipe on, hence no ``tuned`` settings; the compute sizes are those of the tasks above, and only
# ``pretrain_steps`` was chosen, by behaviour cloning alone (``bc``), so that imitation is mediocre but not nil.

# Grasping: FetchPickAndPlace (-1 per step until the block is at the goal, on the table or up to 45 cm above it;
# 50 steps), 400 episodes of a scripted expert's noisy grasp-and-carry (about 27 steps) and a decoy's that carries
# the block elsewhere and drops it, half each. ``bc`` after 10k steps of the width-128 denoiser: 0.05 / 0.15 / 0.00
# (stochastic; deterministic 0.20 / 0.05 / 0.05) on seeds 0-2, 20 episodes each.
register_task(
    Task(
        name="pickandplace",
        make_env=make_pickandplace_env,
        dataset_id=PICKANDPLACE_DATASET_ID,
        build_dataset=build_pickandplace_dataset,
        reward_shift=0.0,
        online_steps=20_000,
        pretrain_steps=10_000,
        eval_interval=2000,
        eval_episodes=20,
        net_arch=[64, 64],
        shared=dict(SMALL_BUDGET),
        expo={**SMALL_EXPO, "policy_kwargs": dict(denoiser_width=128, denoiser_blocks=2)},
        tuned={},
        split="held-out",
    )
)

# A maze between the U-maze and the large one: the medium maze's 10-move path (the noisy expert needs about 195
# of the 330 steps), from 100 episodes with action noise 1.0, each the expert's with probability 0.4 (34
# successful). ``bc`` reached 0.00 after 3000 imitation steps (seed 0); after 10k, 0.15 / 0.05 / 0.10 (stochastic;
# deterministic 0.10 / 0.15 / 0.10) on seeds 0-2, 20 episodes each.
register_task(
    Task(
        name="pointmaze-medium",
        make_env=make_pointmaze_medium_env,
        dataset_id=POINTMAZE_MEDIUM_DATASET_ID,
        build_dataset=build_pointmaze_medium_dataset,
        reward_shift=-1.0,
        online_steps=20_000,
        pretrain_steps=10_000,
        eval_interval=2000,
        eval_episodes=10,  # mostly 330-step failures at first: 2 x 20 of them cost bc about 90 s
        net_arch=[64, 64],
        shared=dict(SMALL_BUDGET),
        expo=dict(SMALL_EXPO),
        tuned={},
        split="held-out",
    )
)


# robosuite's Lift: a Panda picks a cube up (7-D OSC_POSE action; robosuite's sparse 0/1 reward, ended at success,
# shifted to -1 per step; 100 steps), from a robomimic-format .hdf5 file recorded locally (sb3_expo.tasks.lift, under
# $MINARI_DATASETS_PATH): 120 episodes, about half a scripted expert's noisy grasps (44 steps on average) and the rest a
# decoy's grasps next to the cube. Imitation alone (the width-128 base, 20 episodes, seed 0) lifted the cube in 0.20 of
# the episodes after 5k steps, 0.25 after 10k and 0.45 after 20k; a BC MLP in 0.50 (0.75 on the expert's episodes).
register_task(
    Task(
        name="lift",
        make_env=make_lift_env,
        dataset_id=LIFT_DATASET,
        build_dataset=build_lift_dataset,
        reward_shift=-1.0,
        online_steps=20_000,
        pretrain_steps=10_000,
        eval_interval=2000,
        eval_episodes=20,
        net_arch=[128, 128],
        shared=dict(SMALL_BUDGET),
        expo={**SMALL_EXPO, "policy_kwargs": dict(denoiser_width=128, denoiser_blocks=2)},
        tuned={},
        split="held-out",
    )
)
