"""
Offline data sources, each loaded into one in-memory :class:`OfflineTransitions` set.

Loaders import their dependencies (Minari, h5py) only when called: install them with
``pip install "sb3_expo[offline]"``.
"""

from sb3_expo.data.d4rl import load_d4rl_hdf5
from sb3_expo.data.minari import DatasetNotFoundError, load_minari
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
    "load_offline_dataset",
    "load_robomimic_hdf5",
    "scale_actions",
    "validate_against_env",
]
