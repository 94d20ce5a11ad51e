"""
A checkpoint's contents as data that cannot run code when read, and a manifest that catches any changed byte.

Each part of a checkpoint (its own state, the replay buffer) is written as a JSON file and a ``.npz`` file: JSON holds
numbers, strings, lists and dicts; every numpy array or torch tensor (torch's RNG state is a uint8 tensor, numpy's
legacy state holds a uint32 array) is replaced by a reference into the ``.npz``, which is read with
``allow_pickle=False``. Tuples are marked, so that ``random.setstate`` gets tuples back. The objects that SB3
cloudpickles into a model zip (spaces, action noise, learning-rate schedules, classes, ...) are stored by their
attributes or constructor arguments. Reading them back runs no code that a file chooses: a class a file names is
looked up among the modules already imported (never imported), and it is rebuilt only if it is one of the few this
module lists, or named only if it is a network, optimiser, replay buffer or numpy scalar class.

``manifest.json`` holds the SHA-256 of every file of the checkpoint, and of itself (of its ``files`` entry), so that
one flipped bit anywhere, the manifest included, is reported with the file's name before anything is loaded.
"""

import collections
import hashlib
import json
import pathlib
import sys
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise, VectorizedActionNoise
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

from sb3_expo.data import RewardTransform
from sb3_expo.safeguards import write_atomically

STATE_FILE, ARRAYS_FILE, MANIFEST_FILE = "state.json", "arrays.npz", "manifest.json"
STATE_FILES = (STATE_FILE, ARRAYS_FILE)
_CHUNK = 1 << 20


class CheckpointCorruptedError(ValueError):
    """A checkpoint file is missing, changed since it was written, or not in the format this version writes."""


WHAT_TO_DO = (
    "the checkpoint is damaged or was changed after it was written. Resume from an earlier checkpoint "
    "(resume(<its folder>); CheckpointCallback keeps the newest keep_last), or copy this one again from where it "
    "was written."
)


def class_name(cls: type) -> str:
    """``module:qualname``, the name under which :func:`named_class` finds ``cls`` again."""
    return f"{cls.__module__}:{cls.__qualname__}"


def named_class(name: str) -> type:
    """
    The class ``module:qualname`` among the modules already imported, looked up in their namespaces only: a file's
    name never imports a module nor runs a module's ``__getattr__``. Only networks, optimisers, replay buffers and
    numpy scalar types (a policy, its ``policy_kwargs``, an action noise's dtype) are classes a checkpoint may name.

    :raises ValueError: the module is not imported, or the name is no such class
    """
    module, _, qualname = name.partition(":")
    found: Any = sys.modules.get(module)
    if found is None:
        raise ValueError(f"The checkpoint names the class {name}: import {module} before resume (resume imports nothing)")
    for part in qualname.split("."):
        found = vars(found).get(part) if hasattr(found, "__dict__") else None
    if not (isinstance(found, type) and issubclass(found, (th.nn.Module, th.optim.Optimizer, ReplayBuffer, np.generic))):
        raise ValueError(f"The checkpoint names {name}, which is not a network, optimiser, buffer or numpy class")
    return found


def generator_from_state(state: dict[str, Any]) -> np.random.Generator:
    """A numpy ``Generator`` in the saved state of its bit generator (one of numpy's, by name)."""
    bit_generator = vars(np.random).get(state["bit_generator"])
    if not (isinstance(bit_generator, type) and issubclass(bit_generator, np.random.BitGenerator)):
        raise ValueError(f"{state['bit_generator']!r} is not a numpy bit generator")
    generator = np.random.Generator(bit_generator())
    generator.bit_generator.state = state
    return generator


# Objects stored by their attributes and rebuilt without running __init__ (SB3 cloudpickles them into its zip): the
# spaces, the action noises, EXPO's reward transform and the learning-rate schedules (SB3's classes and rl-zoo's "lin_"
# one, by name: not every supported version has them; rebuilt only where their module is imported).
_BY_ATTRIBUTES = {
    *map(class_name, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Dict)),
    *map(class_name, (NormalActionNoise, OrnsteinUhlenbeckActionNoise, VectorizedActionNoise, RewardTransform)),
    *(f"stable_baselines3.common.utils:{name}" for name in ("ConstantSchedule", "LinearSchedule", "FloatSchedule")),
    "rl_zoo3.utils:SimpleLinearSchedule",
}
# Objects rebuilt from their constructor's arguments.
_BY_ARGUMENTS: dict[type, Callable[[Any], list[Any]]] = {
    TrainFreq: list,
    TrainFrequencyUnit: lambda unit: [unit.value],
    collections.deque: lambda items: [list(items), items.maxlen],
    type(pathlib.Path()): lambda path: [str(path)],
}
_BY_ARGUMENTS_NAMED = {class_name(cls): cls for cls in _BY_ARGUMENTS}


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON data; arrays, tensors and numpy scalars go to ``arrays`` under a generated name."""
    if isinstance(value, th.Tensor):
        return {"__tensor__": _store(value.detach().cpu().numpy(), arrays)}
    if isinstance(value, np.ndarray):
        return {"__array__": _store(value, arrays)}
    if isinstance(value, np.generic):
        return {"__scalar__": _store(np.asarray(value), arrays)}
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"Only string keys can be saved as JSON, got {list(value)}")
        return {key: _encode(item, arrays) for key, item in value.items()}
    if type(value) is tuple:  # a NamedTuple is an object of its own (TrainFreq), or no data
        return {"__tuple__": [_encode(item, arrays) for item in value]}
    if isinstance(value, list):
        return [_encode(item, arrays) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return _encode_object(value, arrays)


def _encode_object(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The objects a model zip cloudpickles, of the classes listed above."""
    if isinstance(value, np.dtype):
        return {"__dtype__": value.str}
    if isinstance(value, np.random.Generator):
        return {"__generator__": _encode(value.bit_generator.state, arrays)}
    if isinstance(value, type):
        if named_class(class_name(value)) is not value:
            raise TypeError(f"The class {class_name(value)} cannot be found again by its name")
        return {"__class__": class_name(value)}
    if type(value) in _BY_ARGUMENTS:
        arguments = _BY_ARGUMENTS[type(value)](value)
        return {"__object__": class_name(type(value)), "arguments": _encode(arguments, arrays)}
    if class_name(type(value)) in _BY_ATTRIBUTES:
        return {"__object__": class_name(type(value)), "attributes": _encode(vars(value), arrays)}
    raise TypeError(f"A {type(value).__name__} cannot be saved as checkpoint data (JSON and arrays only)")


def is_data(value: Any) -> bool:
    """Whether ``value`` can be written by :func:`write_data` (and read back without unpickling)."""
    try:
        _encode(value, {})
    except (TypeError, ValueError):
        return False
    return True


def _store(array: np.ndarray, arrays: dict[str, np.ndarray]) -> str:
    if array.dtype == object:
        raise TypeError("Object arrays cannot be saved as checkpoint data")
    name = f"a{len(arrays)}"
    arrays[name] = array
    return name


def _rebuild(value: dict[str, Any], arrays: Any) -> Any:
    """An object of :func:`_encode_object`, of a listed class only."""
    name = value["__object__"]
    if set(value) == {"__object__", "arguments"} and name in _BY_ARGUMENTS_NAMED:
        return _BY_ARGUMENTS_NAMED[name](*_decode(value["arguments"], arrays))
    module, _, qualname = name.partition(":")
    listed = name in _BY_ATTRIBUTES and module in sys.modules
    cls = vars(sys.modules[module]).get(qualname) if listed else None
    if set(value) != {"__object__", "attributes"} or not isinstance(cls, type):
        raise ValueError(f"A checkpoint cannot hold a {name} (or its module is not imported)")
    rebuilt = cls.__new__(cls)
    vars(rebuilt).update(_decode(value["attributes"], arrays))
    return rebuilt


# What a one-key dict stands for.
_MARKED: dict[str, Callable[[Any, Any], Any]] = {
    "__tuple__": lambda items, arrays: tuple(_decode(items, arrays)),
    "__array__": lambda name, arrays: arrays[name],
    "__tensor__": lambda name, arrays: th.from_numpy(arrays[name].copy()),
    "__scalar__": lambda name, arrays: arrays[name][()],
    "__dtype__": lambda text, arrays: np.dtype(text),
    "__generator__": lambda state, arrays: generator_from_state(_decode(state, arrays)),
    "__class__": lambda name, arrays: named_class(name),
}


def _decode(value: Any, arrays: Any) -> Any:
    """The inverse of :func:`_encode`."""
    if isinstance(value, list):
        return [_decode(item, arrays) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _MARKED:
        key = next(iter(value))
        return _MARKED[key](value[key], arrays)
    if "__object__" in value:
        return _rebuild(value, arrays)
    return {key: _decode(item, arrays) for key, item in value.items()}


def write_data(folder: pathlib.Path, names: tuple[str, str], value: Any) -> None:
    """Write ``value`` as the JSON file and the ``.npz`` file ``names`` in ``folder`` (flushed to disk, as zips are)."""
    arrays: dict[str, np.ndarray] = {}
    data = _encode(value, arrays)
    write_atomically(folder / names[0], "json", lambda file: file.write(json.dumps(data, indent=1).encode()))
    write_atomically(folder / names[1], "npz", lambda file: np.savez(file, **arrays))  # type: ignore[arg-type]


def read_data(folder: pathlib.Path, names: tuple[str, str]) -> Any:
    """Read what :func:`write_data` wrote; nothing in either file can run code (JSON, ``allow_pickle=False``)."""
    for name in names:
        if not (folder / name).is_file():
            raise CheckpointCorruptedError(f"{folder / name} is missing: {WHAT_TO_DO}")
    try:
        data = json.loads((folder / names[0]).read_text())
    except (ValueError, OSError, RecursionError) as error:  # JSONDecodeError, bytes that are no text: ValueErrors
        raise CheckpointCorruptedError(f"{folder / names[0]} is unreadable ({error}): {WHAT_TO_DO}") from error
    try:
        with np.load(folder / names[1], allow_pickle=False) as file:
            arrays = {name: file[name] for name in file.files}
    except (ValueError, OSError, zipfile.BadZipFile) as error:  # a pickle, or an object array: ValueError
        raise CheckpointCorruptedError(f"{folder / names[1]} is unreadable ({error}): {WHAT_TO_DO}") from error
    try:
        return _decode(data, arrays)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as error:
        raise CheckpointCorruptedError(f"{folder / names[0]} is unreadable ({error}): {WHAT_TO_DO}") from error


# ------------------------------------------------------------------------------------------------------ manifest


def file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files_digest(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def write_manifest(folder: pathlib.Path, names: tuple[str, ...]) -> None:
    """``manifest.json``: the SHA-256 of each of ``names`` in ``folder``, and of that list itself."""
    files = {name: file_sha256(folder / name) for name in names}
    manifest = {"format": 2, "files": files, "files_sha256": _files_digest(files)}
    write_atomically(folder / MANIFEST_FILE, "json", lambda file: file.write(json.dumps(manifest, indent=1).encode()))


def verify_manifest(folder: pathlib.Path, names: tuple[str, ...]) -> None:
    """
    Check every file of ``names`` against ``manifest.json`` before anything is loaded.

    :raises CheckpointCorruptedError: naming the first file that is missing or differs (or the manifest)
    """
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        intact = manifest["files_sha256"] == _files_digest(files) and set(files) == set(names)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointCorruptedError(f"{path} is missing or unreadable ({error}): {WHAT_TO_DO}") from error
    if not intact:
        raise CheckpointCorruptedError(f"{path} is corrupted (its own checksum does not match): {WHAT_TO_DO}")
    for name in names:
        if not (folder / name).is_file():
            raise CheckpointCorruptedError(f"{folder / name} is missing: {WHAT_TO_DO}")
        if file_sha256(folder / name) != files[name]:
            raise CheckpointCorruptedError(
                f"{folder / name} is corrupted: its SHA-256 differs from the one in {MANIFEST_FILE}, so {WHAT_TO_DO}"
            )
