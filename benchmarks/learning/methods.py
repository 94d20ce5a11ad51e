"""
The methods compared, each a function that builds a ready-to-learn model for a task and seed.

All of them see the same offline data through the same buffer (half of every batch offline, RLPD's
symmetric sampling, rewards shifted by the task's ``reward_shift``), the same batch size, UTD
(``gradient_steps``), ``learning_starts`` and env steps, so their curves differ only by the algorithm:

- ``expo-o2o``: EXPO offline-to-online: the base policy pretrained by imitation, then the critics and the edit
  actor on the same data (``pretrain(..., critic=True)``), then online learning.
- ``expo-o2o-base``: the paper's offline-to-online: only the base policy pretrained; critics and edit actor
  start fresh online (the ablation of the critic pretraining).
- ``expo-o2o-flow``, ``expo-o2o-chunk4``: ``expo-o2o`` with the flow base (its default Euler steps), or acting and
  learning in chunks of 4 actions (docs/algorithm.md, "Beyond the paper").
- ``expo-online``: EXPO with the offline data in its buffer from the start, no pretraining.
- ``rlpd``: RLPD (:class:`sb3_expo.rlpd.RLPD`) with EXPO's ensemble size and subset size, the actor and the
  temperature updated after every critic update (SAC's schedule).
- ``rlpd-delayed``: the same with EXPO's policy delay: one actor update per UTD block, the schedule of RLPD's
  own code. At UTD 2 it learned nothing on PointMaze in 5k steps, where ``rlpd`` reached 1.0
  (``benchmarks/learning/README.md``), so ``rlpd`` is the baseline the tables compare with.
- ``bc``: the pretrained diffusion base alone (one sample per state, no critic or edit): the floor that
  online learning must beat. It never learns online, so it is evaluated once, at step 0.
- ``sac``: SB3's SAC (2 critics, no LayerNorm).
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from benchmarks.learning.tasks import Task
from sb3_expo import EXPO
from sb3_expo.buffers import DictOfflineReplayBuffer, OfflineReplayBuffer
from sb3_expo.data import OfflineTransitions, RewardTransform, load_offline_dataset
from sb3_expo.evaluation import BasePolicyActor
from sb3_expo.policies import ExpoPolicy, policy_option_defaults
from sb3_expo.rlpd import RLPD

OFFLINE_RATIO = 0.5


def load_offline(task: Task) -> OfflineTransitions:
    """
    The task's offline data, loaded once per job and given to every method the same way: a Minari id, or the path
    of a D4RL / robomimic ``.hdf5`` file (``lift``'s robomimic-format file), as EXPO's ``offline_dataset`` names data.
    """
    return load_offline_dataset(task.dataset_id)


def common_kwargs(task: Task, env: gym.Env, seed: int, device: str, buffer_size: int) -> dict[str, Any]:
    """
    The SB3 arguments every method shares: the 50/50 offline/online buffer with the task's reward shift,
    the task's batch size, UTD and network size. ``buffer_size`` is the job's online budget: SB3 pickles
    the whole preallocated buffer at every checkpoint, so a 1M-row default would write ~100 MB each time.
    """
    is_dict = isinstance(env.observation_space, spaces.Dict)
    return dict(
        policy="MultiInputPolicy" if is_dict else "MlpPolicy",
        env=env,
        seed=seed,
        device=device,
        buffer_size=buffer_size,
        replay_buffer_class=DictOfflineReplayBuffer if is_dict else OfflineReplayBuffer,
        replay_buffer_kwargs=dict(offline_ratio=OFFLINE_RATIO, reward_transform=RewardTransform(shift=task.reward_shift)),
        policy_kwargs=dict(net_arch=list(task.net_arch)),
        **task.shared,
    )


def make_expo(
    task: Task, env: gym.Env, seed: int, device: str, buffer_size: int, data: OfflineTransitions, **settings: Any
) -> EXPO:
    """EXPO at the task's compute size (``task.expo``), with its default recipe unless ``settings`` say otherwise."""
    kwargs = common_kwargs(task, env, seed, device, buffer_size)
    expo = {**task.expo, **settings}  # policy_kwargs of both: the task's sizes and the method's own (its base policy)
    expo.pop("policy_kwargs", None)
    kwargs["policy_kwargs"].update({**task.expo.get("policy_kwargs", {}), **settings.get("policy_kwargs", {})})
    # The buffer above already shifts rewards, so EXPO's own reward_shift stays 0.
    return EXPO(offline_dataset=data, **kwargs, **expo)


def expo_o2o(critic_steps: int | str = "auto", **settings: Any) -> Callable[..., EXPO]:
    """A maker of EXPO offline-to-online: ``pretrain(task.pretrain_steps, critic_steps)``, with ``settings``."""

    def make(task: Task, env: gym.Env, seed: int, device: str, buffer_size: int, data: OfflineTransitions) -> EXPO:
        model = make_expo(task, env, seed, device, buffer_size, data, **settings)
        return model.pretrain(task.pretrain_steps, critic_steps=critic_steps)

    return make


def make_expo_tuned(task: Task, env: gym.Env, seed: int, device: str, buffer_size: int, data: OfflineTransitions) -> EXPO:
    """The recipe tuned by hand per task before the defaults held (``task.tuned``: τ, β, critic pretraining steps)."""
    tuned = dict(task.tuned)
    critic_steps = tuned.pop("critic_steps")
    model = make_expo(task, env, seed, device, buffer_size, data, base_imitates="all", **tuned)
    return model.pretrain(task.pretrain_steps, critic_steps=critic_steps)


def expo_setting(task: Task, name: str) -> Any:
    """EXPO's argument ``name`` on this task: the task's value, else EXPO's default (ExpoPolicy's for its options)."""
    default = inspect.signature(EXPO).parameters[name].default
    if default is None and name in inspect.signature(ExpoPolicy.__init__).parameters:
        default = policy_option_defaults((name,))[name]
    return task.expo.get(name, default)


def make_rlpd(
    task: Task, env: gym.Env, seed: int, device: str, buffer_size: int, data: OfflineTransitions, delayed: bool = False
) -> RLPD:
    """
    RLPD with EXPO's critic ensemble settings and RLPD's target entropy -dim(A)/2; the actor after every critic
    update, or (``delayed``) after every ``policy_delay``-th as EXPO's policies.
    """
    settings = {key: expo_setting(task, key) for key in ("n_critics", "critic_subset_size")}
    policy_delay = expo_setting(task, "policy_delay") if delayed else 1
    action_dim = int(np.prod(env.action_space.shape))
    kwargs = common_kwargs(task, env, seed, device, buffer_size)
    model = RLPD(**kwargs, target_entropy=-action_dim / 2, policy_delay=policy_delay, **settings)
    model.replay_buffer.attach_offline(data)  # type: ignore[union-attr]
    return model


def make_rlpd_delayed(task: Task, env: gym.Env, seed: int, device: str, buffer_size: int, data: OfflineTransitions) -> RLPD:
    return make_rlpd(task, env, seed, device, buffer_size, data, delayed=True)


def make_sac(task: Task, env: gym.Env, seed: int, device: str, buffer_size: int, data: OfflineTransitions) -> SAC:
    model = SAC(**common_kwargs(task, env, seed, device, buffer_size))
    model.replay_buffer.attach_offline(data)  # type: ignore[union-attr]
    return model


@dataclass(frozen=True)
class Method:
    """
    :param name: the name on the command line and in the results
    :param algo: the SB3 class that loads its checkpoints
    :param make: ``(task, env, seed, device, buffer_size, offline data) -> model``, ready to ``learn``
    :param learns_online: False for a method evaluated once at step 0 and never trained online (``bc``)
    :param actor: what acts in evaluation, from the model (the model itself by default)
    """

    name: str
    algo: type[OffPolicyAlgorithm]
    make: Callable[..., OffPolicyAlgorithm]
    learns_online: bool = True
    actor: Callable[[Any], Any] = lambda model: model


METHODS: dict[str, Method] = {
    method.name: method
    for method in [
        Method("expo-o2o", EXPO, expo_o2o()),
        Method("expo-paper", EXPO, expo_o2o(critic_steps=0, base_imitates="all")),
        Method("expo-tuned", EXPO, make_expo_tuned),
        Method("expo-online", EXPO, make_expo),
        # the recipe's ablations (docs/algorithm.md, "Fine-tuning recipe")
        Method("expo-o2o-no-critic-pretraining", EXPO, expo_o2o(critic_steps=0)),
        Method("expo-o2o-imitate-all", EXPO, expo_o2o(base_imitates="all")),
        Method("expo-o2o-tau-0.02", EXPO, expo_o2o(tau=0.02)),
        Method("expo-o2o-edit-0.7", EXPO, expo_o2o(edit_scale=0.7)),  # the default before edit_scale="auto"
        Method("expo-paper-edit-0.7", EXPO, expo_o2o(critic_steps=0, base_imitates="all", edit_scale=0.7)),
        # beyond the paper (docs/algorithm.md): the flow base, and action chunks of 4 steps, each with the defaults
        Method("expo-o2o-flow", EXPO, expo_o2o(policy_kwargs=dict(base_policy="flow"))),
        Method("expo-o2o-chunk4", EXPO, expo_o2o(action_chunk=4)),
        Method("rlpd", RLPD, make_rlpd),
        Method("rlpd-delayed", RLPD, make_rlpd_delayed),
        Method("bc", EXPO, expo_o2o(critic_steps=0), learns_online=False, actor=BasePolicyActor),
        Method("sac", SAC, make_sac),
    ]
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"Unknown method '{name}': available methods are {sorted(METHODS)}")
    return METHODS[name]
