"""
rl-zoo integration: the ``sb3-expo`` command runs RL Baselines3 Zoo's ``train`` and ``enjoy`` with EXPO
registered as ``expo`` and this package's YAML hyperparameters (:data:`DEFAULT_HYPERPARAMS`).

rl-zoo has no plugin hook, so :mod:`sb3_expo.zoo.cli` registers EXPO into its tables from our own
entry point. Nothing here is imported by ``import sb3_expo``: importing ``rl_zoo3`` patches
gymnasium's ``TimeLimit``, which the library core must not do to its users. Install with
``pip install "sb3_expo[zoo]"``.
"""

from pathlib import Path

# The shipped per-environment hyperparameters (the paper's settings, docs/tasks.md).
DEFAULT_HYPERPARAMS = Path(__file__).resolve().parent.parent / "hyperparams" / "expo.yml"

__all__ = ["DEFAULT_HYPERPARAMS"]
