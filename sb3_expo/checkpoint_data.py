"""
A checkpoint's model zip and replay buffer, read without unpickling anything.

SB3's zip stays the model's format, but SB3's ``load`` cloudpickles the entries of the zip's ``data`` that are not
JSON (spaces, the policy class, action noise, schedules, the last observation, ...). A checkpoint stores those
values as data too (:func:`zip_objects`), and :func:`custom_objects` hands every one of them to ``load`` as its
``custom_objects``, so that ``load`` unpickles none; the zip's tensors are checked to load with
``torch.load(weights_only=True)``, as SB3 loads them. The replay buffer is written as data (:func:`buffer_data`,
JSON and ``.npz``) instead of SB3's pickle, and put into the loaded model's own buffer (:func:`restore_buffer`).
"""

import json
import pathlib
import pickle
import warnings
import zipfile
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer

from sb3_expo.buffers import OfflineMixingMixin
from sb3_expo.data import RewardTransform
from sb3_expo.safe_state import WHAT_TO_DO, CheckpointCorruptedError, class_name, is_data

BUFFER_FILES = ("replay_buffer.json", "replay_buffer.npz")


def read_zip_data(path: pathlib.Path, check_tensors: bool = True) -> dict[str, Any]:
    """
    The zip's ``data`` as plain JSON (nothing deserialised), after checking that each of its tensor files loads with
    ``weights_only=True`` (SB3 loads them so too; checked here whatever SB3 version is installed, and to name the file).

    :raises CheckpointCorruptedError: ``path`` is no SB3 zip, or a tensor file in it needs unpickling
    """
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
            for name in archive.namelist() if check_tensors else []:
                if name.endswith(".pth"):
                    with archive.open(name) as file:
                        th.load(file, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, RuntimeError, pickle.UnpicklingError) as error:
        message = f"{path} is no model zip that loads without unpickling ({error}): {WHAT_TO_DO}"
        raise CheckpointCorruptedError(message) from error
    if not isinstance(data, dict):
        raise CheckpointCorruptedError(f"{path} is no model zip: its data is not a JSON object. {WHAT_TO_DO}")
    return data


def _cloudpickled(data: dict[str, Any]) -> list[str]:
    """The entries SB3's ``json_to_data`` would cloudpickle."""
    return [key for key, item in data.items() if isinstance(item, dict) and ":serialized:" in item]


# Rebuilt by SB3's load from ``learning_rate`` (``_setup_lr_schedule``): any value does.
_REBUILT_BY_LOAD = {"lr_schedule": None}


def zip_objects(model: Any, path: pathlib.Path) -> dict[str, Any]:
    """The values that SB3 cloudpickled into the model's zip ``path``, those that are data (resume asks for the rest)."""
    keys = [key for key in _cloudpickled(read_zip_data(path, check_tensors=False)) if key not in _REBUILT_BY_LOAD]
    return {key: model.__dict__[key] for key in keys if is_data(model.__dict__[key])}


def custom_objects(path: pathlib.Path, saved: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """
    A value for every cloudpickled entry of the zip ``path``, so that SB3's ``load`` unpickles none: the checkpoint's
    data, or a value the caller passes for an entry a checkpoint cannot hold (a learning-rate function, a custom class).

    :param saved: :func:`zip_objects` of the checkpoint
    :param given: the caller's arguments (``resume``'s keyword arguments and ``custom_objects``)
    :raises ValueError: an entry is neither saved nor given
    """
    data = read_zip_data(path)
    values = {**_REBUILT_BY_LOAD, **saved, **given}
    missing = [key for key in _cloudpickled(data) if key not in values]
    if missing:
        described = ", ".join(f"{key} ({data[key].get(':type:', 'an object')})" for key in missing)
        raise ValueError(
            f"{path} holds {described} as pickled code, which a checkpoint does not store as data and resume never "
            f"unpickles. Pass the same value again: resume(path, env, {missing[0]}=...)."
        )
    return {key: values[key] for key in _cloudpickled(data)}


# ------------------------------------------------------------------------------------------------- replay buffer

# Taken from the model rather than the file: its spaces and device, and the offline data (attached from the model's
# dataset, never saved).
_FROM_THE_MODEL = ("observation_space", "action_space", "device", "_offline")
# Settings the model holds too: the model's are kept, as load_replay_buffer keeps them.
_MODEL_SETTINGS = ("reward_transform", "offline_ratio")


def buffer_data(buffer: ReplayBuffer) -> dict[str, Any]:
    """A replay buffer as data: its class's name and its attributes (arrays, position, sizes, settings)."""
    attributes = {key: value for key, value in vars(buffer).items() if key not in _FROM_THE_MODEL}
    return {"class": class_name(type(buffer)), "attributes": attributes}


def restore_buffer(buffer: ReplayBuffer, saved: dict[str, Any], path: pathlib.Path) -> None:
    """
    Put a saved buffer's contents into ``buffer``, the loaded model's own (built from its class, spaces and sizes).

    The file must describe such a buffer: its class is ``buffer``'s or a base of it (a plain SB3 buffer goes into an
    offline-mixing one, with no episodes marked successful, as ``load_replay_buffer`` adopts it), its arrays have
    ``buffer``'s shapes and dtypes, and its sizes are ``buffer``'s. The model's reward transform and offline ratio
    are kept, with a warning where the file's differed.

    :raises ValueError: the file does not fit ``buffer``, naming what differs
    """
    classes = {class_name(cls) for cls in type(buffer).__mro__}
    attributes = saved.get("attributes") if isinstance(saved, dict) and saved.get("class") in classes else None
    if not isinstance(attributes, dict):
        raise ValueError(f"{path} holds no replay buffer of this model's class ({type(buffer).__name__})")
    if attributes.get("n_envs") != buffer.n_envs:
        raise ValueError(
            f"{path}: the checkpoint was taken with {attributes.get('n_envs')} envs, this env has {buffer.n_envs}"
        )
    fresh = vars(buffer)
    for name, value in attributes.items():
        if name not in _MODEL_SETTINGS and not (name in fresh and _fits(name, value, fresh[name], buffer.buffer_size)):
            raise ValueError(
                f"{path}: the replay buffer's {name} is {_describe(value)}, this model's is "
                f"{_describe(fresh[name]) if name in fresh else 'absent'}: resume with the env and the settings of the "
                "run that wrote the checkpoint"
            )
    _keep_model_settings(buffer, attributes, path)
    fresh.update({name: value for name, value in attributes.items() if name not in _MODEL_SETTINGS})


def _fits(name: str, value: Any, fresh: Any, buffer_size: int) -> bool:
    """Whether a saved attribute can replace the fresh buffer's: same arrays' shapes and dtypes, same sizes."""
    if isinstance(fresh, dict) and isinstance(value, dict) and fresh.keys() == value.keys():
        return all(_fits(name, value[key], fresh[key], buffer_size) for key in fresh)
    if isinstance(fresh, np.ndarray):
        return isinstance(value, np.ndarray) and value.shape == fresh.shape and value.dtype == fresh.dtype
    if name == "pos":
        return type(value) is int and 0 <= value < buffer_size
    if name == "full":
        return type(value) is bool
    return type(value) is type(fresh) and value == fresh


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} ({value.dtype})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_describe(item)}" for key, item in value.items()) + "}"
    return repr(value)


def _keep_model_settings(buffer: ReplayBuffer, attributes: dict[str, Any], path: pathlib.Path) -> None:
    """Warn where the file's reward transform or offline ratio differ from the model's (which are kept)."""
    if not isinstance(buffer, OfflineMixingMixin):
        return
    saved = {"reward_transform": RewardTransform(), "offline_ratio": buffer.offline_ratio}
    saved.update({name: attributes[name] for name in _MODEL_SETTINGS if name in attributes})
    changes = [f"{name} {saved[name]!r} -> {getattr(buffer, name)!r}" for name in _MODEL_SETTINGS
               if saved[name] != getattr(buffer, name)]  # fmt: skip
    if changes:
        warnings.warn(
            f"The replay buffer {path} was saved with other settings than this model's; the model's are used "
            f"({', '.join(changes)}). To train with the file's, resume with them: resume(path, env, reward_scale=..., "
            "reward_shift=..., offline_ratio=...).",
            stacklevel=3,
        )
