"""Optuna search space of EXPO for rl-zoo's ``-optimize``: β, N, K, the UTD ratio and the learning rate."""

from typing import Any

import optuna

EDIT_SCALES = [0.05, 0.1, 0.3, 0.5, 0.7]
N_BASE_SAMPLES = [4, 8, 16]
N_EDIT_SAMPLES = [2, 4, 8, 16]
UTD_RATIOS = [1, 2, 5, 10, 20]


def sample_expo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """
    Sample EXPO's own hyperparameters; everything else stays as the YAML entry sets it.

    - ``edit_scale`` β: the paper's range, small edits for strong offline data up to 0.7 for exploration;
    - ``n_base_samples`` N and ``n_edit_samples`` K (K is capped at N);
    - ``gradient_steps`` (the UTD ratio), with one policy update per env step (``policy_delay`` = UTD);
    - ``learning_rate``, shared by every optimiser.

    :param trial: the Optuna trial
    :param n_actions: action dimension (unused: β is per coordinate)
    :param n_envs: number of envs (unused)
    :param additional_args: rl-zoo's extra arguments (unused)
    :return: EXPO keyword arguments
    """
    return convert_expo_params(
        {
            "edit_scale": trial.suggest_categorical("edit_scale", EDIT_SCALES),
            "n_base_samples": trial.suggest_categorical("n_base_samples", N_BASE_SAMPLES),
            "n_edit_samples": trial.suggest_categorical("n_edit_samples", N_EDIT_SAMPLES),
            "utd": trial.suggest_categorical("utd", UTD_RATIOS),
            "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True),
        }
    )


def convert_expo_params(sampled: dict[str, Any]) -> dict[str, Any]:
    """
    Turn sampled values (or a stored trial's ``params``, for ``--trial-id``) into EXPO arguments.

    :param sampled: ``edit_scale``, ``n_base_samples``, ``n_edit_samples``, ``utd``, ``learning_rate``
    :return: EXPO keyword arguments
    """
    params = dict(sampled)
    if "utd" in params:
        params["gradient_steps"] = params["policy_delay"] = params.pop("utd")
    if "n_edit_samples" in params and "n_base_samples" in params:
        params["n_edit_samples"] = min(params["n_edit_samples"], params["n_base_samples"])
    return params
