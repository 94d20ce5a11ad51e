"""sb3_expo: EXPO (Expressive Policy Optimization) for Stable-Baselines3, and the RLPD baseline."""

from sb3_expo.expo import EXPO
from sb3_expo.policies import ExpoPolicy, MlpPolicy, MultiInputPolicy
from sb3_expo.rlpd import RLPD
from sb3_expo.version import __version__

__all__ = ["EXPO", "RLPD", "ExpoPolicy", "MlpPolicy", "MultiInputPolicy", "__version__"]
