"""
The AntMaze tasks of the paper: ``sb3_expo/AntMaze-{medium,large}-{play,diverse}-v1``, each Minari
``D4RL/antmaze/<maze>-<kind>-v1``'s evaluation maze, with that dataset as its offline data (downloaded
by ``minari download``, never built here). Dict observations: use ``"MultiInputPolicy"``.
"""

from typing import Any

import gymnasium as gym

from sb3_expo.data.minari import load_minari_dataset
from sb3_expo.envs import IsSuccessInfo, TerminateOnSuccess, import_robotics_dependency

ANTMAZE_MAZES = ("medium", "large")
ANTMAZE_KINDS = ("play", "diverse")
# env id -> the Minari dataset whose evaluation env it is.
ANTMAZE_TASKS = {
    f"sb3_expo/AntMaze-{maze}-{kind}-v1": f"D4RL/antmaze/{maze}-{kind}-v1" for maze in ANTMAZE_MAZES for kind in ANTMAZE_KINDS
}


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
    dataset = load_minari_dataset(dataset_id, download)
    return IsSuccessInfo(TerminateOnSuccess(dataset.recover_environment(eval_env=True, **kwargs)))


# The gymnasium ids of this family (sb3_expo.tasks registers them).
ENV_REGISTRATIONS = [
    dict(id=env_id, entry_point=f"{__name__}:make_antmaze_env", kwargs=dict(dataset_id=dataset_id))
    for env_id, dataset_id in ANTMAZE_TASKS.items()
]
