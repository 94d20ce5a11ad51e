"""
Checks that stop or warn early, with the reason. The one home of the finite checks of a run: a non-finite loss before
the optimiser step that it would corrupt, the losses of an update block, a non-finite env step before it enters the
replay buffer (the offline data is checked where it is loaded: :mod:`sb3_expo.data.transitions`); and configurations
that silently waste data or memory (EXPO's argument checks call them).
"""

import math
import re
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space

from sb3_expo.buffers import offline_row_mask
from sb3_expo.compat import total_norm


def check_finite(loss: th.Tensor, name: str, n_updates: int, parameters: Iterable[th.Tensor] | None = None) -> None:
    """
    Raise if ``loss`` (or a gradient of ``parameters``) is NaN or infinite. Call it after ``backward()``
    and before ``optimizer.step()``: the parameters, the optimiser's moments and the target networks are
    then still those of the last good update, so the model in memory can be saved or continued.

    Costs one device-to-host copy (one synchronisation on a GPU); the gradients are checked through
    their total norm (one fused kernel), which is also infinite if it overflows float32.

    :param loss: the scalar loss about to be stepped on
    :param name: its name in the logs (``"train/critic_loss"``)
    :param n_updates: the update counter, for the message
    :param parameters: also check the gradients of these (those without a gradient are skipped)
    :raises FloatingPointError: the loss or a gradient is not finite; no parameter was changed
    """
    loss = loss.detach()
    checks = [th.isfinite(loss).all()]
    gradients = [parameter.grad for parameter in parameters or () if parameter.grad is not None]
    if gradients:
        checks.append(th.isfinite(total_norm(gradients)))
    loss_ok, *gradients_ok = th.stack(checks).tolist()
    if loss_ok and all(gradients_ok):
        return
    what = f"{name} became {loss.float().mean().item()}" if not loss_ok else f"the gradient of {name} became NaN or inf"
    raise FloatingPointError(
        f"EXPO: {what} at update {n_updates}. The optimiser step was not taken: the model in memory is the last good one "
        "(model.save() and save_replay_buffer() still work). The usual causes are NaN/inf rewards or observations, "
        "unnormalised inputs of huge magnitude (try VecNormalize or a smaller learning_rate), or a reward_scale that makes "
        "Q-values overflow; or continue from the last checkpoint (sb3_expo.checkpoints.resume)."
    )


def offline_batch_size_warning(batch_size: int, offline_size: int, offline_ratio: float) -> str | None:
    """
    The reason to warn about a ``batch_size`` larger than the offline dataset, or None.

    :param batch_size: EXPO's (or pretraining's) minibatch size
    :param offline_size: transitions in the offline dataset
    :param offline_ratio: the share of offline rows in a batch once the online buffer holds data
    :raises ValueError: the offline dataset is empty
    """
    if offline_size <= 0:
        raise ValueError("The offline dataset holds no transitions: nothing to mix into the batches or to pretrain on")
    if batch_size <= offline_size:
        return None
    n_offline = int(offline_row_mask(batch_size, offline_ratio).sum())
    return (
        f"batch_size={batch_size} is larger than the offline dataset ({offline_size} transitions). Offline rows are drawn "
        f"with replacement, so every all-offline batch (pretrain(), and learn() until the online buffer holds data) repeats "
        f"transitions: at least {batch_size - offline_size} of its {batch_size} rows are duplicates, and the batch averages "
        f"over fewer distinct transitions than it costs; later batches take {n_offline} offline rows (offline_ratio "
        f"{offline_ratio}) from the same {offline_size}. Use batch_size <= {offline_size}, or more offline data."
    )


def check_offline_batch_size(batch_size: int, offline_size: int, offline_ratio: float, stacklevel: int = 2) -> None:
    """Warn (``UserWarning``) with :func:`offline_batch_size_warning`'s reason when there is one."""
    message = offline_batch_size_warning(batch_size, offline_size, offline_ratio)
    if message is not None:
        warnings.warn(message, stacklevel=stacklevel + 1)


def _is_image(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and is_image_space(space, check_channels=False)


def replay_buffer_observation_bytes(
    observation_space: spaces.Space, buffer_size: int, optimize_memory_usage: bool = False
) -> int:
    """
    Bytes of the observations (and next observations) SB3's replay buffer allocates for ``buffer_size``
    transitions: ``buffer_size · prod(shape) · itemsize``, twice without ``optimize_memory_usage``.
    """
    subspaces = observation_space.spaces.values() if isinstance(observation_space, spaces.Dict) else [observation_space]
    per_transition = sum(int(np.prod(space.shape)) * np.dtype(space.dtype).itemsize for space in subspaces)
    copies = 1 if optimize_memory_usage and not isinstance(observation_space, spaces.Dict) else 2
    return buffer_size * per_transition * copies


def _gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB"


def image_observation_warning(
    observation_space: spaces.Space, buffer_size: int, optimize_memory_usage: bool = False
) -> str | None:
    """
    The reason to warn about image observations (a uint8 Box, which ``MlpPolicy`` flattens: EXPO has no
    convolutional policy), with the replay buffer's size in bytes, or None (vector observations).

    :param observation_space: the env's observation space
    :param buffer_size: the replay buffer's size in transitions
    :param optimize_memory_usage: whether the buffer stores each observation once
    """
    if not _is_image(observation_space):
        return None
    n_bytes = replay_buffer_observation_bytes(observation_space, buffer_size, optimize_memory_usage)
    message = (
        f"Image observations {observation_space.shape} with MlpPolicy: EXPO has no convolutional policy, so every network "
        f"reads the image flattened into {int(np.prod(observation_space.shape))} inputs, and the replay buffer stores "
        f"{buffer_size} {'' if optimize_memory_usage else 'pairs of '}images: {_gigabytes(n_bytes)} "
        f"({n_bytes} bytes) of observations"
    )
    try:
        import psutil

        available = psutil.virtual_memory().available
        message += f", with {_gigabytes(available)} of memory available now"
    except ImportError:
        pass
    fixes = ["a smaller buffer_size", "low-dimensional observations (the env's state)"]
    if not optimize_memory_usage:
        fixes.insert(1, f"optimize_memory_usage=True (halves it to {_gigabytes(math.ceil(n_bytes / 2))})")
    return message + ". Consider " + ", ".join(fixes) + "."


def check_image_observations(
    observation_space: spaces.Space, buffer_size: int, optimize_memory_usage: bool = False, stacklevel: int = 2
) -> None:
    """Warn (``UserWarning``) with :func:`image_observation_warning`'s reason when there is one."""
    message = image_observation_warning(observation_space, buffer_size, optimize_memory_usage)
    if message is not None:
        warnings.warn(message, stacklevel=stacklevel + 1)


def _task_name(env_id: str) -> str:
    """An env id without namespace, version and punctuation: ``"sb3_expo/AntMaze-large-diverse-v1"`` -> antmazelargediverse."""
    name = env_id.rsplit("/", 1)[-1]
    name = re.sub(r"-v\d+$", "", name)
    return re.sub(r"[^a-z0-9]", "", name.lower())


def other_env_warning(recorded_env_id: str | None, env_id: str | None) -> str | None:
    """
    The reason to warn that offline data was recorded on another task than the model's env, or None. Spaces can match
    while the task differs (another maze layout, another robot task). Names are compared without namespace, version and
    punctuation, one containing the other, so that this package's wrapped tasks match the data they were made for
    (``sb3_expo/AntMaze-large-diverse-v1`` and ``AntMaze_Large_Diverse_GR-v4``).
    """
    if not recorded_env_id or not env_id:
        return None
    recorded, current = _task_name(recorded_env_id), _task_name(env_id)
    if recorded in current or current in recorded:
        return None
    return (
        f"The offline dataset was recorded on {recorded_env_id!r}, but this model's env is {env_id!r}: the spaces "
        "match, the task may not. If the data is meant for this env (a wrapper, a relabelled copy), ignore this; "
        "otherwise pass the dataset recorded on this env."
    )


def check_finite_losses(logged: dict[str, float], n_updates: int, prefix: str = "train") -> None:
    """Stop with a clear error when a loss became NaN or inf (``prefix``: the losses' log namespace)."""
    for name in ("critic_loss", "base_loss", "actor_loss", "ent_coef_loss"):
        if name in logged and not math.isfinite(logged[name]):
            raise FloatingPointError(
                f"EXPO: {prefix}/{name} became {logged[name]} after {n_updates} critic updates. The optimiser steps on "
                "non-finite losses were skipped, so the model in memory is the last good one (save() and "
                "save_replay_buffer() still work). The usual causes are NaN/inf in the offline data, unnormalised inputs of "
                "huge magnitude (try VecNormalize or a smaller learning_rate) or a reward_scale that makes Q-values overflow."
            )


def check_finite_base_loss(base_loss: float, n_base_updates: int) -> None:
    """Stop pretraining with a clear error when the imitation loss became NaN or inf."""
    if not math.isfinite(base_loss):
        raise FloatingPointError(
            f"EXPO: pretrain/base_loss became {base_loss} after {n_base_updates} steps: check the offline "
            "data for NaN/inf or huge observations, or lower the learning_rate."
        )


def _finite(observation: Any) -> bool:
    values = observation.values() if isinstance(observation, dict) else [observation]
    return all(np.isfinite(value).all() for value in values)


def non_finite_part(
    last_obs: Any, new_obs: Any, reward: np.ndarray, dones: np.ndarray, infos: list[dict[str, Any]]
) -> str | None:
    """
    What of a transition about to be stored is NaN/inf, or None. SB3 stores ``last_obs`` (the first one of a run is
    the env's reset), the reward, and as next observation ``new_obs`` or, where an episode ended, the info's
    ``terminal_observation``: all three enter the buffer, so all are checked.
    """
    if last_obs is not None and not _finite(last_obs):
        return "observation (the reset observation the episode started from)"
    if not np.isfinite(reward).all():
        return "reward"
    if not _finite(new_obs):
        return "observation"
    for index in np.flatnonzero(dones):
        terminal = infos[index].get("terminal_observation")
        if terminal is not None and not _finite(terminal):
            return f"observation (the last one of an episode of env {index}: info['terminal_observation'])"
    return None


def non_finite_error(what: str, env_step: int, env_name: str = "The env") -> ValueError:
    """The error for a non-finite part of a transition: what it was, when, from which env, and how to go on."""
    return ValueError(
        f"{env_name} returned a non-finite {what} at env step {env_step}. It was not stored: the replay buffer and the "
        "model are unchanged. Fix the env (or clip/normalise its output) and continue with model.set_env(env) and "
        "model.learn(..., reset_num_timesteps=False)."
    )


def check_finite_env_step(reward: np.ndarray, new_obs: np.ndarray | dict[str, np.ndarray], env_step: int) -> None:
    """Refuse a non-finite reward or observation before it enters the replay buffer (it would poison every batch)."""
    what = non_finite_part(None, new_obs, reward, np.zeros(len(reward), dtype=bool), [])
    if what is not None:
        raise non_finite_error(what, env_step)
