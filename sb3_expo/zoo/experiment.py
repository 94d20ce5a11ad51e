"""
rl-zoo's ``ExperimentManager`` for EXPO: the shipped YAML by default, the keys rl-zoo has no notion of
(pretraining, evaluation settings) and the offline datasets a YAML entry names.

Extra keys a YAML entry may hold besides EXPO's arguments (removed before ``EXPO(...)`` is built):

- ``pretrain_steps``: offline-to-online; ``model.pretrain(pretrain_steps)`` runs at the start of
  ``learn()`` (:class:`PretrainCallback`), so it also runs in every ``-optimize`` trial;
- ``critic_pretrain_steps``: then ``model.pretrain(critic_pretrain_steps, critic=True)``: the critics and
  the edit actor are trained on the offline data before the first env step;
- ``eval_freq``, ``n_eval_episodes``, ``n_eval_envs``: the evaluation of the paper's task (``EvalCallback``,
  ``eval/success_rate``); ``--eval-freq``, ``--eval-episodes`` and ``--n-eval-envs`` on the command line win;
- ``deterministic_eval``: ``false`` evaluates the stochastic on-the-fly policy, as the paper does.
"""

import math
import os
import sys
from functools import partial
from typing import Any
from unittest import mock

import optuna
import rl_zoo3.exp_manager
import torch as th
from rl_zoo3.exp_manager import ExperimentManager
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from sb3_expo.expo import EXPO
from sb3_expo.tasks import prepare_offline_dataset
from sb3_expo.zoo import DEFAULT_HYPERPARAMS, sweeps
from sb3_expo.zoo.storage import worker_name

# YAML key -> (ExperimentManager attribute, command-line flags that override it)
EVALUATION_KEYS = {
    "eval_freq": ("eval_freq", ("--eval-freq",)),
    "n_eval_episodes": ("n_eval_episodes", ("--eval-episodes",)),
    "n_eval_envs": ("n_eval_envs", ("--n-eval-envs",)),
}


class PretrainCallback(BaseCallback):
    """
    Offline-to-online pretraining for rl-zoo, which has no pretraining hook: at the start of ``learn()``
    (the logger is set up by then, so ``pretrain/*`` lands in the same TensorBoard run) the base policy
    is pretrained by imitation of the offline data with :meth:`sb3_expo.EXPO.pretrain`.

    A model whose base policy was already trained (one resumed with ``-i``) is not pretrained again.

    :param n_steps: pretraining gradient steps of the base policy
    :param critic_steps: then this many offline UTD blocks of the critics and the edit actor
        (``EXPO.pretrain(n_steps, critic_steps)``; ``"auto"`` is EXPO's default, 0 the paper's imitation only)
    :param progress_bar: show a progress bar
    :param verbose: 1 prints when pretraining starts and ends
    """

    def __init__(self, n_steps: int, critic_steps: int | str = "auto", progress_bar: bool = False, verbose: int = 1):
        super().__init__(verbose)
        self.n_steps = n_steps
        self.critic_steps = critic_steps
        self.progress_bar = progress_bar

    def _on_training_start(self) -> None:
        model = self.model
        if not isinstance(model, EXPO):
            raise TypeError(f"pretrain_steps needs an EXPO model, got {type(model).__name__}")
        if model._n_base_updates > 0:
            if self.verbose:
                print(f"Not pretraining: the base policy has had {model._n_base_updates} updates already")
            return
        if self.verbose:
            print(
                f"Pretraining on the offline data: {self.n_steps} imitation steps of the base policy, then "
                f"{self.critic_steps} UTD blocks of the critics and the edit actor"
            )
        model.pretrain(self.n_steps, critic_steps=self.critic_steps, progress_bar=self.progress_bar)

    def _on_step(self) -> bool:
        return True


def _on_command_line(flags: tuple[str, ...]) -> bool:
    """Whether one of ``flags`` was given on the command line (then it wins over the YAML entry)."""
    return any(arg == flag or arg.startswith(flag + "=") for arg in sys.argv[1:] for flag in flags)


class ExpoExperimentManager(ExperimentManager):
    """
    rl-zoo's experiment manager, with these differences for EXPO:

    - without ``-conf`` the hyperparameters come from :data:`~sb3_expo.zoo.DEFAULT_HYPERPARAMS`;
    - without ``-tb`` TensorBoard logs go to ``<log folder>/tensorboard/<env>`` (never during ``-optimize``);
    - the extra YAML keys of this module are applied, and a local offline dataset the entry names
      (the PointMaze demo data, the relabelled Adroit data) is built if it is missing. A robomimic entry
      whose ``offline_dataset`` is null takes the file of ``--env-kwargs dataset_path:...``;
    - ``-optimize --storage <database URL>``: the study is shared safely by workers on many machines
      (:mod:`sb3_expo.zoo.sweeps`: heartbeats, dead workers' trials retried, ``--max-total-trials``
      that waits for them), each trial records the worker that ran it, and a trial that hits a NaN or
      runs out of GPU memory is recorded as failed instead of stopping the worker.

    Arguments: those of ``rl_zoo3.exp_manager.ExperimentManager``.
    """

    # Seconds between two heartbeats of a running trial in a database study (``--heartbeat-interval``).
    heartbeat_interval: int = sweeps.DEFAULT_HEARTBEAT_INTERVAL

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if kwargs.get("config") is None:
            self.config = str(DEFAULT_HYPERPARAMS)
        if self.tensorboard_log is None and not self.optimize_hyperparameters:
            self.tensorboard_log = os.path.join(self.log_folder, "tensorboard", self.env_name)

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        hyperparams, saved_hyperparams = super().read_hyperparameters()
        dataset_path = (hyperparams.get("env_kwargs") or self.env_kwargs or {}).get("dataset_path")
        if "offline_dataset" in hyperparams and hyperparams["offline_dataset"] is None and dataset_path is not None:
            hyperparams["offline_dataset"] = saved_hyperparams["offline_dataset"] = dataset_path
        prepare_offline_dataset(hyperparams.get("offline_dataset"))
        return hyperparams, saved_hyperparams

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]) -> tuple[dict[str, Any], Any, list[BaseCallback], Any]:
        hyperparams = dict(hyperparams)
        for key, (attribute, flags) in EVALUATION_KEYS.items():
            value = hyperparams.pop(key, None)
            if value is not None and not _on_command_line(flags):
                setattr(self, attribute, int(value))
        if "deterministic_eval" in hyperparams:
            self.deterministic_eval = bool(hyperparams.pop("deterministic_eval"))
        pretrain_steps = int(hyperparams.pop("pretrain_steps", 0) or 0)
        critic_pretrain_steps = hyperparams.pop("critic_pretrain_steps", "auto")
        critic_pretrain_steps = critic_pretrain_steps if critic_pretrain_steps == "auto" else int(critic_pretrain_steps or 0)
        if pretrain_steps > 0 or critic_pretrain_steps not in (0, "auto"):
            callbacks = hyperparams.get("callback") or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            pretrain = PretrainCallback(pretrain_steps, critic_pretrain_steps, progress_bar=self.show_progress)
            hyperparams["callback"] = [pretrain, *callbacks]
        return super()._preprocess_hyperparams(hyperparams)

    def hyperparameters_optimization(self) -> None:
        """
        rl-zoo's ``-optimize``. With a database ``--storage`` the study gets the storage of
        :func:`~sb3_expo.zoo.sweeps.shared_storage` (rl-zoo passes the bare URL to Optuna) and
        ``--max-total-trials`` the stop of :class:`~sb3_expo.zoo.sweeps.SharedStudyMaxTrials`; the
        study records its env for ``sb3-expo best-params``. Everything else is rl-zoo's.
        """
        if not sweeps.is_database_url(self.storage):
            return super().hyperparameters_optimization()
        create_study = optuna.create_study
        storage = sweeps.shared_storage(self.storage, self.heartbeat_interval)

        def create_shared_study(**kwargs: Any) -> optuna.Study:
            study = create_study(**{**kwargs, "storage": storage})
            study.set_user_attr(sweeps.ENV_ATTR, self.env_name.gym_id)
            return study

        max_trials = partial(sweeps.SharedStudyMaxTrials, poll_interval=min(5.0, self.heartbeat_interval / 2))
        with (
            mock.patch.object(rl_zoo3.exp_manager.optuna, "create_study", create_shared_study),
            mock.patch.object(rl_zoo3.exp_manager, "MaxTrialsCallback", max_trials),
        ):
            return super().hyperparameters_optimization()

    def objective(self, trial: optuna.Trial) -> float:
        """
        rl-zoo's trial, which also records the worker (``<host>:<pid>``) as the trial's ``worker``
        attribute. A NaN in training (``FloatingPointError``) or running out of GPU memory returns NaN:
        Optuna records the trial as ``FAIL`` and the worker goes on to the next one. (rl-zoo shares one
        ``policy_kwargs`` dict between the trials of a worker; EXPO copies it before adding its options.)
        """
        trial.set_user_attr(sweeps.WORKER_ATTR, worker_name())
        try:
            return super().objective(trial)
        except (FloatingPointError, th.cuda.OutOfMemoryError) as error:
            print(f"Trial {trial.number} failed: {type(error).__name__}: {error}")
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:500])
            return math.nan

    def learn(self, model: BaseAlgorithm) -> None:
        super().learn(model)
        if self.tensorboard_log is not None:
            print(f"TensorBoard logs: {model.logger.get_dir()}")
            print(f"    open them with: tensorboard --logdir {self.tensorboard_log}")


class EXPOForPlaying(EXPO):
    """
    ``EXPO.load`` for ``enjoy``: with a one-transition replay buffer and without the offline data, which
    acting never uses (rl-zoo shrinks the buffer only for the off-policy algorithms it knows).
    """

    @classmethod
    def load(cls, path: Any, env: Any = None, device: Any = "auto", custom_objects: Any = None, **kwargs: Any) -> EXPO:
        kwargs = {"buffer_size": 1, "offline_dataset": None, **kwargs}
        return EXPO.load(path, env=env, device=device, custom_objects=custom_objects, **kwargs)
