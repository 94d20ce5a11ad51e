"""Name an offline dataset by one string (a Minari id or an HDF5 path) and load it.

EXPO stores only this string in its model zip, never the data: :func:`load_offline_dataset` rebuilds
the transitions from it after ``EXPO.load``.
"""

import os
import re
from pathlib import Path
from typing import Any

from sb3_expo.data.d4rl import load_d4rl_hdf5, open_hdf5
from sb3_expo.data.minari import load_minari
from sb3_expo.data.robomimic import load_robomimic_hdf5
from sb3_expo.data.transitions import OfflineTransitions

# Minari ids: optional namespaces, a name and a version, e.g. "D4RL/antmaze/large-diverse-v1".
MINARI_ID = re.compile(r"^([\w.-]+/)*[\w.-]+-v\d+$")
HDF5_SUFFIXES = (".hdf5", ".h5")

OfflineSource = str | os.PathLike | OfflineTransitions


def load_offline_dataset(source: OfflineSource, **kwargs: Any) -> OfflineTransitions:
    """
    Load offline transitions from what names them.

    - an :class:`OfflineTransitions` is returned as it is;
    - a path to an ``.hdf5`` / ``.h5`` file (or any existing file) is read as a robomimic / MimicGen file
      when it has a ``data`` group of demos, else as a legacy D4RL file;
    - a Minari id such as ``"D4RL/pen/expert-v2"`` is loaded from ``$MINARI_DATASETS_PATH``.

    :param source: the dataset
    :param kwargs: passed to the loader: ``download`` (Minari), or ``obs_keys`` and ``filter_key`` (robomimic)
    :raises ValueError: ``source`` is neither an existing file, an HDF5 path nor a Minari id
    """
    if isinstance(source, OfflineTransitions):
        return source
    path = Path(source)
    if path.is_file() or path.suffix in HDF5_SUFFIXES:
        return _load_hdf5(path, **kwargs)
    if MINARI_ID.match(str(source)):
        return load_minari(str(source), **kwargs)
    raise ValueError(
        f"Unknown offline dataset {str(source)!r}: expected a Minari dataset id such as 'D4RL/pen/expert-v2' or "
        f"'D4RL/antmaze/large-diverse-v1', or the path of a D4RL / robomimic .hdf5 file (no such file exists)."
    )


def _load_hdf5(path: Path, **kwargs: Any) -> OfflineTransitions:
    with open_hdf5(path) as file:
        is_robomimic = "data" in file
    if is_robomimic:
        return load_robomimic_hdf5(path, **kwargs)
    return load_d4rl_hdf5(path, **kwargs)
