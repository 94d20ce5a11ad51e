"""
Recording scripted controllers into local Minari datasets: the machinery shared by the task datasets
that are built on this machine (:mod:`sb3_expo.tasks.pointmaze`, :mod:`sb3_expo.tasks.fetchpush`).
It runs environments, so it belongs to the tasks, above the data loaders it writes for.

A task describes its dataset as a :class:`MixtureRecipe`: :meth:`MixtureRecipe.build` reuses the
dataset already built (:func:`~sb3_expo.data.load_or_build`) or checks the controllers first
(:func:`check_controllers`: the expert must succeed often, a uniformly random policy must not),
records a mixture of episodes (:func:`record_mixture`) and writes them (:func:`write_minari_dataset`).
"""

import copy
import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_expo.data.minari import load_or_build
from sb3_expo.data.transitions import import_offline_dependency, map_observations

# A controller maps one (not batched) observation to an action; it may have a ``reset()`` that
# :func:`rollout_episode` calls before every episode.
Controller = Callable[[Any], Any]


def rollout_episode(env: gym.Env, policy: Controller, seed: int | None = None) -> dict[str, Any]:
    """
    Run one episode to its end (termination or time limit) and keep every step, in Minari's layout.

    :param env: the environment (with its time limit, else a policy that never succeeds never stops)
    :param policy: maps one observation to an action (e.g. :class:`~sb3_expo.tasks.pointmaze.PointMazeExpert`);
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
        observations=map_observations(lambda *steps: np.stack(steps), *observations),
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


def create_minari_dataset(dataset_id: str, buffers: Sequence[Any], **metadata: Any) -> Any:
    """
    ``minari.create_dataset_from_buffers`` with sb3_expo as the author (and without Minari's warning
    that no author e-mail is set), for every dataset this package writes.

    :param dataset_id: Minari id (``namespace/name-vN``)
    :param buffers: ``minari.data_collector.EpisodeBuffer`` objects, one per episode
    :param metadata: the other ``create_dataset_from_buffers`` arguments (``env``, ``description``, ...)
    :return: the ``minari.MinariDataset``
    """
    minari = import_offline_dependency("minari")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`author_email` is set to None")
        return minari.create_dataset_from_buffers(dataset_id, buffers, author="sb3_expo", **metadata)


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
    import_offline_dependency("minari")
    from minari.data_collector import EpisodeBuffer

    buffers = [
        EpisodeBuffer(id=index, seed=seed + index, **{key: value for key, value in episode.items() if key != "is_success"})
        for index, episode in enumerate(episodes)
    ]
    return create_minari_dataset(
        dataset_id, buffers, env=env.spec, eval_env=env.spec, requirements=list(requirements), **metadata
    )


# A controller factory: (env, noise_std=..., seed=...) -> controller.
ControllerFactory = Callable[..., Controller]


@dataclasses.dataclass(frozen=True)
class MixtureSettings:
    """
    How much a scripted dataset records, and how noisily (:class:`MixtureRecipe`).

    :param n_episodes: episodes to record
    :param expert_fraction: probability that an episode is the expert's; 1 records expert data only
    :param noise_std: Gaussian action noise of both controllers
    :param seed: episode ``i`` resets with ``seed + i``; the choice of controller and their noise are
        seeded from ``seed`` too
    :param check_episodes: before recording, the noisy expert and random actions run this many episodes
        each, on starts the dataset does not use
    """

    n_episodes: int
    expert_fraction: float
    noise_std: float
    seed: int = 0
    check_episodes: int = 10


@dataclasses.dataclass(frozen=True)
class MixtureRecipe:
    """
    How a task's scripted dataset is made: a mixture of an expert that does the task and another
    controller that does something else, both noisy, so that imitation alone is mediocre while the
    expert's episodes show the critic the task. The PointMaze and FetchPush datasets differ only in
    these fields.

    :param make_env: creates the (registered) environment to record in
    :param expert: the class of the controller that does the task, called ``(env, noise_std=, seed=)``;
        the dataset's ``algorithm_name`` names it and ``other``
    :param other: the class of the controller that does something else, called the same way
    :param defaults: the dataset's settings, which a build may change
    :param min_expert_success: the check before recording needs the expert to succeed at least this often
    :param max_random_success: and uniformly random actions at most this often
    :param ref_scores: ``check -> (ref_min_score, ref_max_score)`` of the dataset
    :param code_permalink: the builder's dotted path
    :param task: what the task is, for the dataset's description (``"... episodes on <env id> (task): ..."``)
    :param expert_does: what the expert does (``"a share 0.1 by <expert_does>"``)
    :param other_does: what the other controller does (``"the rest by <other_does>"``)
    """

    make_env: Callable[[], gym.Env]
    expert: ControllerFactory
    other: ControllerFactory
    defaults: MixtureSettings
    min_expert_success: float
    max_random_success: float
    ref_scores: Callable[[ControllerCheck], tuple[float, float]]
    code_permalink: str
    task: str
    expert_does: str
    other_does: str

    def check(self, env: gym.Env, noise_std: float, seed: int, n_episodes: int) -> ControllerCheck:
        """
        :func:`check_controllers` with this recipe's expert (seeded ``seed + 2``) and thresholds.

        :raises RuntimeError: the expert fails or random actions succeed too often
        """
        expert = self.expert(env, noise_std=noise_std, seed=seed + 2)
        return check_controllers(env, expert, n_episodes, seed, self.min_expert_success, self.max_random_success)

    def record(
        self, env: gym.Env, n_episodes: int, expert_fraction: float, noise_std: float, seed: int
    ) -> list[dict[str, Any]]:
        """:func:`record_mixture` of the expert (seeded ``seed``) and the other controller (``seed + 1``)."""
        expert = self.expert(env, noise_std=noise_std, seed=seed)
        other = self.other(env, noise_std=noise_std, seed=seed + 1)
        return record_mixture(env, expert, other, n_episodes, expert_fraction, seed)

    def build(self, dataset_id: str, overwrite: bool = False, **settings: Any) -> Any:
        """
        Reuse ``dataset_id`` if it was built already; otherwise check the controllers on starts the
        dataset does not use (from ``seed + n_episodes``), record the episodes and write them, so that a
        dataset whose expert fails (or whose task random actions solve) is never written.

        :param dataset_id: Minari id to write (``namespace/name-vN``)
        :param overwrite: rebuild the dataset if it exists; otherwise the existing one is reused (with a
            warning if its number of episodes differs)
        :param settings: :class:`MixtureSettings` fields that differ from :attr:`defaults`
        :return: the ``minari.MinariDataset``
        """
        chosen = dataclasses.replace(self.defaults, **settings)
        if not 0.0 <= chosen.expert_fraction <= 1.0:
            raise ValueError(f"expert_fraction must be in [0, 1], got {chosen.expert_fraction}")
        return load_or_build(dataset_id, lambda: self._record_and_write(dataset_id, chosen), overwrite, chosen.n_episodes)

    def _record_and_write(self, dataset_id: str, settings: MixtureSettings) -> Any:
        env = self.make_env()
        try:
            check = self.check(env, settings.noise_std, settings.seed + settings.n_episodes, settings.check_episodes)
            episodes = self.record(env, settings.n_episodes, settings.expert_fraction, settings.noise_std, settings.seed)
        finally:
            env.close()
        success_rate = float(np.mean([episode["is_success"] for episode in episodes]))
        metadata = self._metadata(env.spec.id, check, success_rate, settings)  # type: ignore[union-attr]
        return write_minari_dataset(dataset_id, episodes, env, settings.seed, **metadata)

    def _metadata(self, env_id: str, check: ControllerCheck, success_rate: float, settings: MixtureSettings) -> dict[str, Any]:
        ref_min_score, ref_max_score = self.ref_scores(check)
        controllers = f"{self.expert.__name__}/{self.other.__name__}"  # type: ignore[attr-defined]
        return dict(
            algorithm_name=f"{controllers}(expert_fraction={settings.expert_fraction}, noise_std={settings.noise_std})",
            code_permalink=self.code_permalink,
            ref_min_score=ref_min_score,
            ref_max_score=ref_max_score,
            description=(
                f"{settings.n_episodes} episodes on {env_id} ({self.task}): a share {settings.expert_fraction} by "
                f"{self.expert_does}, the rest by {self.other_does}, both with Gaussian action noise "
                f"(std {settings.noise_std}). "
                f"Success rate of the episodes: {success_rate:.2f}. Checked before recording: {check.summary()}."
            ),
        )
