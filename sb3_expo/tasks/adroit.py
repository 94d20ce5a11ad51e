"""
The binary Adroit tasks of Cal-QL and RLPD: ``sb3_expo/AdroitHand{Pen,Door,Relocate}Binary-v1``,
Gymnasium-Robotics' hands with reward 0 where the goal is achieved and -1 elsewhere, and their offline
data: Minari's ``D4RL/<task>/cloned-v2`` relabelled into the local dataset
``sb3_expo/<task>-binary-cloned-v2`` (:func:`build_adroit_binary_dataset`).
"""

import functools
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_expo.data.minari import load_minari_dataset, load_or_build
from sb3_expo.envs import import_robotics_dependency
from sb3_expo.tasks.recording import create_minari_dataset


class AdroitBinaryReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """
    The binary Adroit tasks of Cal-QL / RLPD (``pen-binary``, ``door-binary``, ``relocate-binary``):
    the reward is 0 at steps where the goal is achieved (``info["success"]``) and -1 otherwise, in
    place of the env's dense shaped reward.

    ``info["is_success"]`` (SB3's ``rollout/success_rate``, ``eval/success_rate``) follows the
    Adroit success criterion of DAPG / D4RL: an episode succeeds when the goal was achieved on more than
    ``min_success_steps`` of its steps (20 for pen, 25 for door and relocate).

    :param env: a Gymnasium-Robotics Adroit hand environment (``AdroitHandPen-v1``, ...)
    :param min_success_steps: the episode succeeds once the goal was achieved on more than this many steps
    """

    def __init__(self, env: gym.Env, min_success_steps: int = 20):
        gym.utils.RecordConstructorArgs.__init__(self, min_success_steps=min_success_steps)
        gym.Wrapper.__init__(self, env)
        self.min_success_steps = min_success_steps
        self._success_steps = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._success_steps = 0
        return obs, {**info, "is_success": False}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(action)
        success = bool(info.get("success", False))
        self._success_steps += int(success)
        is_success = self._success_steps > self.min_success_steps
        return obs, binary_reward(success), terminated, truncated, {**info, "is_success": is_success}


def binary_reward(success: Any) -> Any:
    """The binary Adroit reward: 0 where the goal is achieved, -1 elsewhere (scalars or arrays)."""
    return np.asarray(success, dtype=np.float32) - 1.0 if isinstance(success, np.ndarray) else float(bool(success)) - 1.0


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
    achieved and -1 elsewhere (:class:`AdroitBinaryReward`). The registered id adds the
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


def _relabelled_buffers(original: Any, source_id: str) -> list[Any]:
    """The source dataset's episodes with rewards ``success - 1``; everything else is copied as it is."""
    from minari.data_collector import EpisodeBuffer

    return [
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
    env_id, source_id = adroit_binary_env_id(task), f"D4RL/{task}/{source}-v2"

    def relabel() -> Any:
        original = load_minari_dataset(source_id, download)
        return create_minari_dataset(
            adroit_binary_dataset_id(task, source),
            _relabelled_buffers(original, source_id),
            env=env_id,
            eval_env=env_id,
            observation_space=original.observation_space,
            action_space=original.action_space,
            algorithm_name=f"{source_id} relabelled",
            code_permalink=f"{__name__}.build_adroit_binary_dataset",
            description=f"{source_id} with binary rewards success - 1 for {env_id}",
        )

    return load_or_build(adroit_binary_dataset_id(task, source), relabel, overwrite=overwrite)


# The gymnasium ids of this family (sb3_expo.tasks registers them).
ENV_REGISTRATIONS = [
    dict(
        id=adroit_binary_env_id(task),
        entry_point=f"{__name__}:make_adroit_binary_env",
        max_episode_steps=max_episode_steps,
        kwargs=dict(task=task),
    )
    for task, (max_episode_steps, _) in ADROIT_BINARY_TASKS.items()
]
# The relabelled datasets built locally: id -> builder.
LOCAL_DATASETS = {
    adroit_binary_dataset_id(task): functools.partial(build_adroit_binary_dataset, task) for task in ADROIT_BINARY_TASKS
}
