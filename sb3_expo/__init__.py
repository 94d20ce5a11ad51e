"""sb3_expo: EXPO (Expressive Policy Optimization) for Stable-Baselines3."""

from sb3_expo.expo import EXPO
from sb3_expo.policies import ExpoPolicy, MlpPolicy, MultiInputPolicy
from sb3_expo.version import __version__

__all__ = ["EXPO", "ExpoPolicy", "MlpPolicy", "MultiInputPolicy", "__version__"]
