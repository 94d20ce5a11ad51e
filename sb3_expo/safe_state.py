"""
A checkpoint's own state as data that cannot run code when read, and a manifest that catches any changed byte.

The state (counters, the logger's run, RNG states, VecNormalize statistics) is written as ``state.json`` and
``arrays.npz``: JSON holds numbers, strings, lists and dicts; every numpy array or torch tensor in it (torch's RNG
state is a uint8 tensor, numpy's legacy state holds a uint32 array) is replaced by a reference into the ``.npz``,
which is read with ``allow_pickle=False``. Tuples are marked, so that ``random.setstate`` gets tuples back.

``manifest.json`` holds the SHA-256 of every file of the checkpoint, and of itself (of its ``files`` entry), so that
one flipped bit anywhere, the manifest included, is reported with the file's name before anything is loaded.
"""

import hashlib
import json
import pathlib
from typing import Any

import numpy as np
import torch as th

from sb3_expo.safeguards import write_atomically

STATE_FILE, ARRAYS_FILE, MANIFEST_FILE = "state.json", "arrays.npz", "manifest.json"
_CHUNK = 1 << 20


class CheckpointCorruptedError(ValueError):
    """A checkpoint file is missing, changed since it was written, or not in the format this version writes."""


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON data; arrays and tensors go to ``arrays`` under a generated name."""
    if isinstance(value, th.Tensor):
        value = value.detach().cpu().numpy()
        return {"__tensor__": _store(value, arrays)}
    if isinstance(value, np.ndarray):
        return {"__array__": _store(value, arrays)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"Only string keys can be saved as JSON, got {list(value)}")
        return {key: _encode(item, arrays) for key, item in value.items()}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item, arrays) for item in value]}
    if isinstance(value, list):
        return [_encode(item, arrays) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"A {type(value).__name__} cannot be saved as checkpoint data (JSON and arrays only)")


def _store(array: np.ndarray, arrays: dict[str, np.ndarray]) -> str:
    if array.dtype == object:
        raise TypeError("Object arrays cannot be saved as checkpoint data")
    name = f"a{len(arrays)}"
    arrays[name] = array
    return name


def _decode(value: Any, arrays: Any) -> Any:
    """The inverse of :func:`_encode`."""
    if isinstance(value, list):
        return [_decode(item, arrays) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__tuple__"}:
        return tuple(_decode(item, arrays) for item in value["__tuple__"])
    if set(value) == {"__array__"}:
        return arrays[value["__array__"]]
    if set(value) == {"__tensor__"}:
        return th.from_numpy(arrays[value["__tensor__"]].copy())
    return {key: _decode(item, arrays) for key, item in value.items()}


def write_state(folder: pathlib.Path, state: dict[str, Any]) -> None:
    """Write ``state`` as ``state.json`` and ``arrays.npz`` in ``folder`` (flushed to disk, as the model's zip is)."""
    arrays: dict[str, np.ndarray] = {}
    data = _encode(state, arrays)
    write_atomically(folder / STATE_FILE, "json", lambda file: file.write(json.dumps(data, indent=1).encode()))
    write_atomically(folder / ARRAYS_FILE, "npz", lambda file: np.savez(file, **arrays))  # type: ignore[arg-type]


def read_state(folder: pathlib.Path) -> dict[str, Any]:
    """Read what :func:`write_state` wrote; nothing in either file can run code (JSON, ``allow_pickle=False``)."""
    for name in (STATE_FILE, ARRAYS_FILE):
        if not (folder / name).is_file():
            raise CheckpointCorruptedError(f"{folder / name} is missing: {_WHAT_TO_DO}")
    try:
        data = json.loads((folder / STATE_FILE).read_text())
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as arrays:
            return _decode(data, {name: arrays[name] for name in arrays.files})
    except (ValueError, OSError, KeyError) as error:  # JSONDecodeError and pickled arrays are ValueErrors
        raise CheckpointCorruptedError(f"{folder} holds unreadable state ({error}): {_WHAT_TO_DO}") from error


# ------------------------------------------------------------------------------------------------------ manifest

_WHAT_TO_DO = (
    "the checkpoint is damaged or was changed after it was written. Resume from an earlier checkpoint "
    "(resume(<its folder>); CheckpointCallback keeps the newest keep_last), or copy this one again from where it "
    "was written."
)


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
        raise CheckpointCorruptedError(f"{path} is missing or unreadable ({error}): {_WHAT_TO_DO}") from error
    if not intact:
        raise CheckpointCorruptedError(f"{path} is corrupted (its own checksum does not match): {_WHAT_TO_DO}")
    for name in names:
        if not (folder / name).is_file():
            raise CheckpointCorruptedError(f"{folder / name} is missing: {_WHAT_TO_DO}")
        if file_sha256(folder / name) != files[name]:
            raise CheckpointCorruptedError(
                f"{folder / name} is corrupted: its SHA-256 differs from the one in {MANIFEST_FILE}, so {_WHAT_TO_DO}"
            )
