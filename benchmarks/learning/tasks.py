"""
The benchmark's tasks: an environment, an offline dataset that is built locally, and the settings every
method runs with on it. Add a task with ``register_task(Task(...))``; ``run.py --tasks <name>`` then runs it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from sb3_expo.data.pointmaze import POINTMAZE_DATASET_ID, build_pointmaze_dataset
from sb3_expo.envs import make_pointmaze_env


@dataclass(frozen=True)
class Task:
    """
    One benchmark task. Every method gets the same data, env steps, batch size and UTD (``shared``) on it;
    ``expo`` holds what only EXPO has (and what RLPD copies from it: ``n_critics``, ``critic_subset_size``,
    ``policy_delay``).

    :param name: the name on the command line and in the results
    :param make_env: creates one training or evaluation env; it must report ``info["is_success"]``
    :param dataset_id: Minari id of the offline data (under ``$MINARI_DATASETS_PATH``)
    :param build_dataset: creates that dataset locally if it is missing (called once, before any job starts)
    :param reward_shift: added to every sampled reward, offline and online (-1: a cost per step until the goal)
    :param online_steps: env steps of online learning per job (``--steps`` overrides it)
    :param pretrain_steps: imitation steps of EXPO's base policy before online learning (``expo-o2o``, ``bc``)
    :param eval_interval: env steps between two evaluations (and checkpoints)
    :param eval_episodes: episodes per evaluation
    :param net_arch: hidden layers of every critic and actor
    :param shared: SB3 arguments of every method (``batch_size``, ``gradient_steps`` = UTD, ``learning_starts``, ...)
    :param expo: EXPO's own arguments; its ``policy_kwargs`` (denoiser size) are merged with ``net_arch``
    """

    name: str
    make_env: Callable[[], gym.Env]
    dataset_id: str
    build_dataset: Callable[[], Any]
    reward_shift: float = 0.0
    online_steps: int = 5000
    pretrain_steps: int = 3000
    eval_interval: int = 1000
    eval_episodes: int = 20
    net_arch: list[int] = field(default_factory=lambda: [256, 256])
    shared: dict[str, Any] = field(default_factory=dict)
    expo: dict[str, Any] = field(default_factory=dict)


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` available by name; registering a name again replaces the task (handy in tests)."""
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"Unknown task '{name}': registered tasks are {sorted(TASKS)}")
    return TASKS[name]


# The demo task: sparse PointMaze U-maze, mixed-quality data (30% expert), the settings of
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
        shared=dict(learning_starts=0, batch_size=128, gradient_steps=2),
        expo=dict(
            edit_scale=0.5,
            policy_delay=2,
            n_critics=5,
            n_base_samples=4,
            n_edit_samples=4,
            policy_kwargs=dict(denoiser_width=64, denoiser_blocks=2),
        ),
    )
)
