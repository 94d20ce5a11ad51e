"""
Recording scripted controllers into local Minari datasets: the machinery shared by the task datasets
that are built on this machine (:mod:`sb3_expo.data.pointmaze`, :mod:`sb3_expo.data.fetchpush`).

A builder checks its controllers first (:func:`check_controllers`: the expert must succeed often, a
uniformly random policy must not), records a mixture of episodes (:func:`record_mixture`) and writes
them as a Minari dataset (:func:`write_minari_dataset`), or reuses the one already built
(:func:`load_existing_dataset`).
"""

import copy
import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_expo.data.transitions import import_offline_dependency

# A controller maps one (not batched) observation to an action; it may have a ``reset()`` that
# :func:`rollout_episode` calls before every episode.
Controller = Callable[[Any], Any]


def _stack(observations: list[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
    return np.stack(observations)


def rollout_episode(env: gym.Env, policy: Controller, seed: int | None = None) -> dict[str, Any]:
    """
    Run one episode to its end (termination or time limit) and keep every step, in Minari's layout.

    :param env: the environment (with its time limit, else a policy that never succeeds never stops)
    :param policy: maps one observation to an action (e.g. :class:`~sb3_expo.data.pointmaze.PointMazeExpert`);
        its ``reset()``, if it has one, is called first
    :param seed: reset seed of this episode, for a reproducible start and goal position
    :return: ``observations`` (``T + 1`` rows, a dict of arrays for Dict observations; the last one after
        the final step), ``actions``, ``rewards``, ``terminations`` and ``truncations`` (``T`` each) and
        ``is_success`` (the last step's ``info["is_success"]``)
    """
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset()
    obs, info = env.reset(seed=seed)
    observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
    while not (terminations and (terminations[-1] or truncations[-1])):
        action = policy(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
    return dict(
        observations=_stack(observations),
        actions=np.stack(actions),
        rewards=rewards,
        terminations=terminations,
        truncations=truncations,
        is_success=bool(info.get("is_success", False)),
    )


class RandomController:
    """
    Uniformly random actions, the baseline every builder checks its task against.

    :param action_space: the environment's action space
    :param seed: seed of the sampler (a copy of the space is seeded, the env's own is left alone)
    """

    def __init__(self, action_space: gym.spaces.Space, seed: int | None = None):
        self.action_space = copy.deepcopy(action_space)
        self.action_space.seed(seed)

    def __call__(self, observation: Any) -> np.ndarray:
        return self.action_space.sample()


@dataclasses.dataclass(frozen=True)
class ControllerCheck:
    """What :func:`check_controllers` measured, on ``n_episodes`` episodes each."""

    n_episodes: int
    expert_success_rate: float
    random_success_rate: float
    expert_mean_return: float
    random_mean_return: float
    expert_mean_length: float

    def summary(self) -> str:
        """One line for a dataset description or a log."""
        return (
            f"expert success rate {self.expert_success_rate:.2f} (mean length {self.expert_mean_length:.0f} steps), "
            f"random actions {self.random_success_rate:.2f}, over {self.n_episodes} episodes each"
        )


def check_controllers(
    env: gym.Env,
    expert: Controller,
    n_episodes: int,
    seed: int,
    min_expert_success: float,
    max_random_success: float,
) -> ControllerCheck:
    """
    Measure the expert's success rate and a uniformly random policy's on the same ``n_episodes`` starts,
    before a dataset is written, and refuse a task the expert does not solve or that random actions do.

    :param env: the task (with its time limit)
    :param expert: the dataset's expert, with the dataset's noise (a fresh instance: its generator advances)
    :param n_episodes: episodes for each policy; episode ``i`` resets with ``seed + i``
    :param seed: pick starts the dataset does not use (e.g. just after its last episode's seed)
    :param min_expert_success: the least acceptable expert success rate
    :param max_random_success: the highest acceptable random success rate
    :return: the measured rates, returns and the expert's episode length
    :raises RuntimeError: the expert succeeds less than ``min_expert_success``, or random actions more
        than ``max_random_success``
    """
    if n_episodes < 1:
        raise ValueError(f"check_controllers needs at least one episode, got {n_episodes}")
    expert_episodes = [rollout_episode(env, expert, seed=seed + index) for index in range(n_episodes)]
    random_policy = RandomController(env.action_space, seed=seed)
    random_episodes = [rollout_episode(env, random_policy, seed=seed + index) for index in range(n_episodes)]
    check = ControllerCheck(
        n_episodes=n_episodes,
        expert_success_rate=float(np.mean([episode["is_success"] for episode in expert_episodes])),
        random_success_rate=float(np.mean([episode["is_success"] for episode in random_episodes])),
        expert_mean_return=float(np.mean([np.sum(episode["rewards"]) for episode in expert_episodes])),
        random_mean_return=float(np.mean([np.sum(episode["rewards"]) for episode in random_episodes])),
        expert_mean_length=float(np.mean([len(episode["rewards"]) for episode in expert_episodes])),
    )
    task = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if check.expert_success_rate < min_expert_success:
        raise RuntimeError(
            f"The scripted expert reaches the goal of {task} in only {check.expert_success_rate:.2f} of "
            f"{n_episodes} episodes (at least {min_expert_success} needed): its data would not show the task. "
            "Lower its action noise."
        )
    if check.random_success_rate > max_random_success:
        raise RuntimeError(
            f"Random actions solve {task} in {check.random_success_rate:.2f} of {n_episodes} episodes (at most "
            f"{max_random_success} allowed): the task is too easy to tell learning from luck."
        )
    return check


def record_mixture(
    env: gym.Env, expert: Controller, other: Controller, n_episodes: int, expert_fraction: float, seed: int
) -> list[dict[str, Any]]:
    """
    Roll out ``n_episodes`` episodes, each the expert's with probability ``expert_fraction`` and
    otherwise the other controller's (a wanderer, a decoy).

    :param env: the task
    :param expert: the controller that does the task
    :param other: the controller that does something else
    :param n_episodes: how many episodes
    :param expert_fraction: probability that an episode is the expert's
    :param seed: episode ``i`` resets with ``seed + i``; the choice of controller is seeded from ``seed``
    :return: the episodes, as :func:`rollout_episode` returns them
    """
    if not 0.0 <= expert_fraction <= 1.0:
        raise ValueError(f"expert_fraction must be in [0, 1], got {expert_fraction}")
    rng = np.random.default_rng(seed)
    return [
        rollout_episode(env, expert if rng.random() < expert_fraction else other, seed=seed + index)
        for index in range(n_episodes)
    ]


def load_existing_dataset(minari: Any, dataset_id: str, n_episodes: int, overwrite: bool) -> Any | None:
    """
    The dataset already built under ``dataset_id``, or None when it must be (re)built.

    :param minari: the ``minari`` module
    :param dataset_id: the Minari id
    :param n_episodes: how many episodes the caller asked for (a different count is reused, with a warning)
    :param overwrite: delete an existing dataset (and return None) instead of reusing it
    """
    try:
        dataset = minari.load_dataset(dataset_id)
    except FileNotFoundError:
        return None
    if overwrite:
        minari.delete_dataset(dataset_id)
        return None
    if dataset.total_episodes != n_episodes:
        warnings.warn(
            f"Reusing the Minari dataset '{dataset_id}' with {dataset.total_episodes} episodes although "
            f"{n_episodes} were asked for: pass overwrite=True to rebuild it.",
            stacklevel=3,
        )
    return dataset


def write_minari_dataset(
    dataset_id: str,
    episodes: Sequence[dict[str, Any]],
    env: gym.Env,
    seed: int,
    requirements: Sequence[str] = ("gymnasium-robotics>=1.3", "mujoco>=3.3,<3.9"),
    **metadata: Any,
) -> Any:
    """
    Write recorded episodes as a local Minari dataset under ``$MINARI_DATASETS_PATH``.

    :param dataset_id: Minari id (``namespace/name-vN``)
    :param episodes: as :func:`rollout_episode` returns them; episode ``i`` was reset with ``seed + i``
    :param env: the (registered) environment they were recorded in: its spec becomes the dataset's
        ``env_spec`` and ``eval_env_spec``
    :param seed: the first episode's reset seed
    :param requirements: pip requirements of the environment
    :param metadata: ``minari.create_dataset_from_buffers`` arguments (``algorithm_name``,
        ``description``, ``ref_min_score``, ...); the author is sb3_expo
    :return: the ``minari.MinariDataset``
    """
    minari = import_offline_dependency("minari")
    from minari.data_collector import EpisodeBuffer

    buffers = [
        EpisodeBuffer(id=index, seed=seed + index, **{key: value for key, value in episode.items() if key != "is_success"})
        for index, episode in enumerate(episodes)
    ]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`author_email` is set to None")
        return minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=env.spec,
            eval_env=env.spec,
            author="sb3_expo",
            requirements=list(requirements),
            **metadata,
        )


def build_checked_dataset(
    dataset_id: str,
    n_episodes: int,
    overwrite: bool,
    make_env: Callable[[], gym.Env],
    check: Callable[[gym.Env], ControllerCheck],
    record: Callable[[gym.Env], list[dict[str, Any]]],
    seed: int,
    metadata: Callable[[ControllerCheck, float], dict[str, Any]],
) -> Any:
    """
    A builder's whole recipe: reuse ``dataset_id`` if it was built already; otherwise check the controllers,
    record the episodes and write them, so that a dataset whose expert fails (or whose task random actions
    solve) is never written.

    :param dataset_id: the Minari id
    :param n_episodes: episodes to record
    :param overwrite: rebuild the dataset if it exists
    :param make_env: creates the (registered) environment to record in
    :param check: runs :func:`check_controllers` in that env (raises when the controllers are not fit)
    :param record: records the episodes in that env (e.g. :func:`record_mixture`)
    :param seed: the first episode's reset seed
    :param metadata: ``(check, success rate of the recorded episodes) -> write_minari_dataset metadata``
    :return: the ``minari.MinariDataset``
    """
    minari = import_offline_dependency("minari")
    existing = load_existing_dataset(minari, dataset_id, n_episodes, overwrite)
    if existing is not None:
        return existing
    env = make_env()
    try:
        controller_check = check(env)
        episodes = record(env)
    finally:
        env.close()
    success_rate = float(np.mean([episode["is_success"] for episode in episodes]))
    return write_minari_dataset(dataset_id, episodes, env, seed, **metadata(controller_check, success_rate))
