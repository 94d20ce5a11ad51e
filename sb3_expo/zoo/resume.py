"""
Exact checkpoints and resuming for the ``sb3-expo train`` command::

    sb3-expo train --env Pendulum-v1 --save-freq 5000                  # checkpoints in logs/expo/Pendulum-v1_1/checkpoints
    sb3-expo train --env Pendulum-v1 --resume logs/expo/Pendulum-v1_1   # continues the newest one, to the same -n

``--save-freq N`` writes :class:`sb3_expo.checkpoints.CheckpointCallback` checkpoints (model, replay
buffer, every generator's state; at the first episode start after every ``N`` env steps, the newest two
kept) in ``<run folder>/checkpoints`` instead of rl-zoo's model-only zips. ``--resume <folder>`` loads
the newest checkpoint of a run folder, of its ``checkpoints`` folder or a checkpoint folder itself with
:func:`sb3_expo.checkpoints.resume` and trains until ``-n`` env steps in all (the YAML's
``n_timesteps`` without ``-n``), exactly as the interrupted run would have: the hyperparameters are the
checkpoint's, the env is made from the same ``--env`` / ``--env-kwargs``, TensorBoard continues the same
run; rl-zoo writes the rest (final model, new checkpoints) in a new run folder.
"""

import functools
import os
from typing import Any

import rl_zoo3.train
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CheckpointCallback as ZooCheckpointCallback
from stable_baselines3.common.vec_env import VecEnv

from sb3_expo.checkpoints import CheckpointCallback, latest_checkpoint, resume
from sb3_expo.zoo.experiment import ExpoExperimentManager


class ResumableExperimentManager(ExpoExperimentManager):
    """:class:`~sb3_expo.zoo.experiment.ExpoExperimentManager` with exact checkpoints and ``--resume``."""

    # The folder of ``--resume`` (set by :func:`take_resume_option`), or None for a new run.
    resume_from: str | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.resume_from is not None:
            self.continue_training = True  # rl-zoo then builds the model with _load_pretrained_agent

    def create_callbacks(self) -> None:
        super().create_callbacks()
        for index, callback in enumerate(self.callbacks):
            if type(callback) is ZooCheckpointCallback:  # rl-zoo divided --save-freq by n_envs: back to env steps
                save_path = os.path.join(self.save_path, "checkpoints")
                self.callbacks[index] = CheckpointCallback(callback.save_freq * self.n_envs, save_path, verbose=1)

    def _load_pretrained_agent(self, hyperparams: dict[str, Any], env: VecEnv) -> BaseAlgorithm:
        assert self.resume_from is not None
        checkpoint = latest_checkpoint(self.resume_from)
        print(f"Resuming from {checkpoint} (its hyperparameters; the command line's are not applied)")
        return resume(checkpoint, env, device=self.device)

    def learn(self, model: BaseAlgorithm) -> None:
        if self.resume_from is None:
            return super().learn(model)
        total, self.n_timesteps = self.n_timesteps, max(self.n_timesteps - model.num_timesteps, 0)
        print(f"Resumed at {model.num_timesteps} env steps: {self.n_timesteps} more to reach {total}")
        model.learn = functools.partial(model.learn, reset_num_timesteps=False)  # type: ignore[method-assign]
        try:
            super().learn(model)
        finally:
            del model.learn
            self.n_timesteps = total


def take_resume_option(options: list[str]) -> list[str]:
    """
    Make ``sb3-expo train`` use :class:`ResumableExperimentManager`, and remove ``--resume FOLDER``
    (rl-zoo does not know it) from ``options``.

    :return: the options for rl-zoo
    """
    rl_zoo3.train.ExperimentManager = ResumableExperimentManager  # type: ignore[misc]
    ResumableExperimentManager.resume_from = None
    for i, option in enumerate(options):
        if option == "--resume" or option.startswith("--resume="):
            value = option.partition("=")[2] if "=" in option else (options[i + 1] if i + 1 < len(options) else "")
            if not value or value.startswith("-"):
                raise SystemExit("sb3-expo: --resume needs a folder: a run folder, its checkpoints folder or one checkpoint")
            ResumableExperimentManager.resume_from = value
            return options[:i] + options[i + (1 if "=" in option else 2) :]
    return options
