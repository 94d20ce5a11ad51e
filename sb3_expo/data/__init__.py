"""
Offline data sources, each loaded into one in-memory :class:`OfflineTransitions` set, and the one
"load or build" helper of the Minari datasets built locally (:func:`load_or_build`). These loaders
import nothing from the tasks, the environments or the algorithm: the tasks that build datasets
(:mod:`sb3_expo.tasks`) sit above them.

Loaders import their dependencies (Minari, h5py) only when called: install them with
``pip install "sb3_expo[offline]"``.
"""

from sb3_expo.data.d4rl import load_d4rl_hdf5
from sb3_expo.data.minari import DatasetNotFoundError, load_minari, load_minari_dataset, load_or_build
from sb3_expo.data.robomimic import load_robomimic_hdf5
from sb3_expo.data.sources import OfflineSource, load_offline_dataset
from sb3_expo.data.transitions import OfflineTransitions, RewardTransform, scale_actions, validate_against_env

__all__ = [
    "DatasetNotFoundError",
    "OfflineSource",
    "OfflineTransitions",
    "RewardTransform",
    "load_d4rl_hdf5",
    "load_minari",
    "load_minari_dataset",
    "load_offline_dataset",
    "load_or_build",
    "load_robomimic_hdf5",
    "scale_actions",
    "validate_against_env",
]
