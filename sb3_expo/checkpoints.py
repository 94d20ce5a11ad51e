"""
Saving that survives being interrupted, and resuming that continues a run exactly.

Every file is written under a temporary name, then renamed (:func:`~sb3_expo.safeguards.write_atomically`).
:class:`CheckpointCallback` writes checkpoints (model, replay buffer, every generator's state) from
which :func:`resume` continues a run as if it had never stopped. A checkpoint is data that :func:`resume` reads
without unpickling anything (JSON, ``.npz`` without pickles, SB3's zip with a data value for each of its pickled
entries: :mod:`sb3_expo.safe_state`, :mod:`sb3_expo.checkpoint_data`), and every file is checked against its SHA-256
before it is loaded.
"""

import os
import pathlib
import random
import re
import shutil
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import (
    CSVOutputFormat,
    HumanOutputFormat,
    JSONOutputFormat,
    Logger,
    TensorBoardOutputFormat,
    make_output_format,
)
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from sb3_expo.checkpoint_data import BUFFER_FILES, buffer_data, custom_objects, restore_buffer, zip_objects
from sb3_expo.expo import EXPO
from sb3_expo.safe_state import (
    MANIFEST_FILE,
    STATE_FILE,
    STATE_FILES,
    CheckpointCorruptedError,
    generator_from_state,
    read_data,
    verify_manifest,
    write_data,
    write_manifest,
)
from sb3_expo.safeguards import remove_stale_temporaries, temporary_path, write_atomically

__all__ = [
    "CheckpointCallback",
    "CheckpointCorruptedError",
    "latest_checkpoint",
    "list_checkpoints",
    "remaining_timesteps",
    "resume",
    "write_atomically",
]


# ------------------------------------------------------------------------------------- exact resume

# The files a manifest lists (with their SHA-256), and all the files of a checkpoint.
HASHED_FILES = ("model.zip", *BUFFER_FILES, *STATE_FILES)
CHECKPOINT_FILES = (*HASHED_FILES, MANIFEST_FILE)
_CHECKPOINT_NAME = re.compile(r"(?P<prefix>.+)_(?P<steps>\d+)_steps")
# 1: state.pkl, 2: replay_buffer.pkl (pickles, no longer read: unpickling can run code); 3: data only.
_STATE_FORMAT = 3


def rng_state() -> dict[str, Any]:
    """The process-wide generators: torch (CPU, and CUDA when it is in use), numpy's global one and Python's ``random``."""
    state: dict[str, Any] = {"torch": th.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}
    if th.cuda.is_available() and th.cuda.is_initialized():
        state["cuda"] = th.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back generators saved by :func:`rng_state`."""
    th.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and th.cuda.is_available():
        th.cuda.set_rng_state_all(state["cuda"])


def env_rng_states(env: VecEnv) -> list[dict[str, Any]] | None:
    """The state of every sub-env's ``np_random`` (a copy), or None for envs without one."""
    try:
        return [generator.bit_generator.state for generator in env.get_attr("np_random")]
    except AttributeError:
        return None


def _logger_state(model: BaseAlgorithm) -> dict[str, Any] | None:
    """The folder and the output kinds of the model's logger, to continue the same run (TensorBoard, CSV, ...)."""
    logger = getattr(model, "_logger", None)
    if logger is None:
        return None
    kinds = []
    for output in logger.output_formats:
        if isinstance(output, TensorBoardOutputFormat):
            kinds.append("tensorboard")
        elif isinstance(output, CSVOutputFormat):
            kinds.append("csv")
        elif isinstance(output, JSONOutputFormat):
            kinds.append("json")
        elif isinstance(output, HumanOutputFormat):
            kinds.append("log" if output.own_file else "stdout")
    return {"dir": logger.get_dir(), "formats": kinds}


def _vec_normalize_state(model: BaseAlgorithm) -> dict[str, Any] | None:
    """The running statistics of the model's VecNormalize (its settings come with the env given to :func:`resume`)."""
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is None:
        return None
    statistics = lambda rms: {"mean": rms.mean, "var": rms.var, "count": rms.count}  # noqa: E731
    obs_rms = getattr(vec_normalize, "obs_rms", None)
    if isinstance(obs_rms, dict):
        return {
            "obs_rms": {key: statistics(rms) for key, rms in obs_rms.items()},
            "ret_rms": statistics(vec_normalize.ret_rms),
        }
    return {"obs_rms": None if obs_rms is None else statistics(obs_rms), "ret_rms": statistics(vec_normalize.ret_rms)}


def _restore_vec_normalize(vec_normalize: Any, saved: dict[str, Any]) -> None:
    """Put back the statistics of :func:`_vec_normalize_state` (copies: the arrays are updated in place later)."""

    def put(rms: Any, values: dict[str, Any]) -> None:
        rms.mean, rms.var, rms.count = np.array(values["mean"]), np.array(values["var"]), values["count"]

    if isinstance(getattr(vec_normalize, "obs_rms", None), dict):  # Dict observations: one per key
        for key, values in saved["obs_rms"].items():
            put(vec_normalize.obs_rms[key], values)
    elif saved["obs_rms"] is not None:
        put(vec_normalize.obs_rms, saved["obs_rms"])
    put(vec_normalize.ret_rms, saved["ret_rms"])


def save_checkpoint(model: BaseAlgorithm, path: str | os.PathLike, env_rng: list[dict[str, Any]] | None) -> pathlib.Path:
    """
    Write a checkpoint folder: ``model.zip`` (SB3's format), ``replay_buffer.json`` and ``replay_buffer.npz`` (the
    replay buffer), ``state.json`` and ``arrays.npz`` (the zip's pickled entries as data, every RNG state, the env's
    RNG before its last reset, VecNormalize statistics, the logger's run) and ``manifest.json`` (the SHA-256 of each
    file, checked by :func:`resume`). All but the zip are data that cannot run code when read, and :func:`resume`
    reads the zip without unpickling. The folder is written under a name of its own and renamed, so ``path`` is
    either absent or complete, also when several saves to ``path`` run at once.

    Meant to be called between two updates, when the last env step has ended the episode of every env
    (the rule of :class:`CheckpointCallback`); :func:`resume` checks that a fresh env reset from the saved
    generators returns the saved observation.

    :param model: an off-policy SB3 model (EXPO, SAC, ...)
    :param path: the checkpoint folder
    :param env_rng: the state of every sub-env's ``np_random`` *before* the step whose reset started the
        current episodes (:func:`env_rng_states`)
    :return: ``path``
    """
    destination = pathlib.Path(path)
    remove_stale_temporaries(destination)
    temporary = temporary_path(destination)
    temporary.mkdir(parents=True)
    try:
        model.save(temporary / "model.zip")
        write_data(temporary, BUFFER_FILES, buffer_data(model.replay_buffer))  # type: ignore[attr-defined]
        state = {
            "format": _STATE_FORMAT,
            "num_timesteps": model.num_timesteps,
            "zip_objects": zip_objects(model, temporary / "model.zip"),
            "rng": rng_state(),
            "action_space_rng": model.action_space.np_random.bit_generator.state,
            "env_rng": env_rng,
            "vec_normalize": _vec_normalize_state(model),
            "logger": _logger_state(model),
        }
        write_data(temporary, STATE_FILES, state)
        write_manifest(temporary, HASHED_FILES)
        _replace_folder(temporary, destination)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return destination


def _replace_folder(source: pathlib.Path, destination: pathlib.Path) -> None:
    """
    Rename ``source`` to ``destination``, moving an existing ``destination`` aside first (a folder cannot be renamed
    onto a non-empty one). Retried, for a concurrent save may put its folder there in between.
    """
    for _ in range(100):
        try:
            os.replace(source, destination)
            return
        except OSError:  # ENOTEMPTY / EEXIST: a destination is there
            old = temporary_path(destination)
            try:
                os.replace(destination, old)
            except FileNotFoundError:
                continue  # another save moved it aside: try again
            shutil.rmtree(old, ignore_errors=True)
    raise RuntimeError(f"Could not rename {source} to {destination}: other saves kept replacing it")


def _is_checkpoint(path: pathlib.Path) -> bool:
    return all((path / name).is_file() for name in CHECKPOINT_FILES)


def list_checkpoints(folder: str | os.PathLike, name_prefix: str | None = None) -> list[pathlib.Path]:
    """The complete checkpoints ``<prefix>_<steps>_steps`` in ``folder``, oldest first (by env steps)."""
    found = []
    for path in pathlib.Path(folder).glob("*_steps"):
        match = _CHECKPOINT_NAME.fullmatch(path.name)
        if match and (name_prefix is None or match["prefix"] == name_prefix) and _is_checkpoint(path):
            found.append((int(match["steps"]), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(path: str | os.PathLike) -> pathlib.Path:
    """
    ``path`` itself if it is a checkpoint folder, else the newest complete checkpoint in ``path`` or in
    ``path/checkpoints`` (the ``sb3-expo`` run folder).

    :raises FileNotFoundError: there is none
    """
    path = pathlib.Path(path)
    if _is_checkpoint(path):
        return path
    _refuse_pickled_format(path)
    missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
    if any((path / name).is_file() for name in (*STATE_FILES, MANIFEST_FILE)):  # only checkpoints have them
        raise CheckpointCorruptedError(
            f"{path} is an incomplete checkpoint: {', '.join(missing)} missing. Resume from an earlier checkpoint, or "
            "copy this one again from where it was written."
        )
    for folder in (path, path / "checkpoints"):
        found = list_checkpoints(folder) if folder.is_dir() else []
        if found:
            return found[-1]
        for earlier in sorted(folder.glob("*_steps")):  # none complete: say why if they are of an earlier format
            _refuse_pickled_format(earlier)
    raise FileNotFoundError(
        f"No checkpoint at {path}: expected a folder holding {', '.join(CHECKPOINT_FILES)} (written by "
        "sb3_expo.checkpoints.CheckpointCallback), or a folder of such '<prefix>_<steps>_steps' folders"
    )


def _refuse_pickled_format(path: pathlib.Path) -> None:
    """A checkpoint of an earlier version, with a pickle in it, is refused with the reason (never unpickled)."""
    for name in ("state.pkl", "replay_buffer.pkl"):
        if (path / name).is_file():
            raise CheckpointCorruptedError(
                f"{path} was written by an earlier sb3_expo ({name}): resume no longer unpickles checkpoints, since "
                "unpickling can run code. Resume it with the version that wrote it, or, if you wrote it yourself, "
                "start again from its model.zip and replay_buffer.pkl (EXPO.load, load_replay_buffer: SB3's "
                "pickles, load only your own)."
            )


class CheckpointCallback(BaseCallback):
    """
    Checkpoints from which :func:`resume` continues a run *exactly*: in a new process, the resumed run
    computes the same parameters, bit for bit on a CPU, as a run that was never interrupted.

    A checkpoint is the folder ``<save_path>/<name_prefix>_<steps>_steps/`` with the model zip (networks,
    EMA base, target critics, optimisers, temperature, step and update counters, learning-rate
    progress, action noise, episode statistics), the replay buffer (``replay_buffer.json`` and ``.npz``),
    ``state.json`` and ``arrays.npz`` (the zip's pickled entries as data, torch / numpy / ``random``
    generators, the action space's generator, the env's ``np_random``, VecNormalize statistics, the
    logger's run folder) and ``manifest.json`` (the SHA-256 of every file, checked by :func:`resume`):
    :func:`resume` unpickles none of them. Folders are written under a temporary name and renamed, so a
    kill at any instant leaves complete checkpoints only; the ``keep_last`` newest are kept.

    **The rule**: a checkpoint is taken between two updates, at the first rollout start at which at
    least ``save_freq`` env steps have passed since the last one *and every env has just started a
    new episode*. The env's state is then its reset state, which depends only on the env's
    ``np_random`` before that reset: the checkpoint stores that generator state, and :func:`resume`
    resets a fresh env from it and checks that it returns the checkpoint's observation. (An env in the
    middle of an episode, a MuJoCo simulator or a robot, cannot be saved in general; its reset can.)
    With several envs the episodes must end together (equal fixed lengths), or checkpoints wait until
    they do. Checkpoints are never taken before ``save_freq`` env steps, nor at the end of ``learn()``.

    Works for any off-policy SB3 algorithm; EXPO's ``save`` is already atomic.

    :param save_freq: env steps (``num_timesteps``, all envs together) between two checkpoints, at least
    :param save_path: the folder of the checkpoint folders
    :param name_prefix: checkpoint folders are ``<name_prefix>_<num_timesteps>_steps``
    :param keep_last: how many checkpoints to keep (older ones are deleted); None keeps all
    :param verbose: 1 prints every checkpoint
    """

    def __init__(
        self,
        save_freq: int,
        save_path: str | os.PathLike,
        name_prefix: str = "expo",
        keep_last: int | None = 2,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        if save_freq < 1:
            raise ValueError(f"save_freq must be >= 1 env step, got {save_freq}")
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
        self.save_freq = save_freq
        self.save_path = pathlib.Path(save_path)
        self.name_prefix = name_prefix
        self.keep_last = keep_last
        self.last_saved_at = 0
        self._env_rng_before_last_step: list[dict[str, Any]] | None = None
        self._env_rng_before_next_step: list[dict[str, Any]] | None = None
        self._all_done = False  # whether the last env step ended the episode of every env
        self._waiting_since_warned = False

    def _init_callback(self) -> None:
        self.save_path.mkdir(parents=True, exist_ok=True)
        for leftover in self.save_path.glob(f".{self.name_prefix}_*_steps.*.tmp"):  # from a process killed while saving
            shutil.rmtree(leftover, ignore_errors=True)
        self.last_saved_at = self.model.num_timesteps
        self._env_rng_before_last_step = self._env_rng_before_next_step = None
        self._all_done = False

    def checkpoint_path(self, num_timesteps: int) -> pathlib.Path:
        return self.save_path / f"{self.name_prefix}_{num_timesteps}_steps"

    def _on_rollout_start(self) -> None:
        # Between updates: the previous train() has finished and no env step of this rollout has run yet.
        due = self.model.num_timesteps - self.last_saved_at >= self.save_freq
        if due and self._all_done and self._env_rng_before_last_step is not None:
            path = save_checkpoint(self.model, self.checkpoint_path(self.model.num_timesteps), self._env_rng_before_last_step)
            self.last_saved_at = self.model.num_timesteps
            self._waiting_since_warned = False
            if self.verbose >= 1:
                print(f"Saving checkpoint to {path}")
            self._remove_old()
        elif due and not self._waiting_since_warned and self.model.num_timesteps - self.last_saved_at >= 10 * self.save_freq:
            warnings.warn(
                f"No checkpoint for {self.model.num_timesteps - self.last_saved_at} env steps: checkpoints are taken when "
                "every env starts an episode at the same step, which these envs' episodes rarely do (use one env, or "
                "episodes of one fixed length)",
                stacklevel=2,
            )
            self._waiting_since_warned = True
        self._env_rng_before_next_step = env_rng_states(self.training_env)

    def _on_step(self) -> bool:
        # Called after env.step: the env generators before this step are the ones to keep if it ended the episodes.
        self._env_rng_before_last_step = self._env_rng_before_next_step
        self._env_rng_before_next_step = env_rng_states(self.training_env)
        self._all_done = bool(np.all(self.locals["dones"]))
        return True

    def _remove_old(self) -> None:
        if self.keep_last is None:
            return
        for old in list_checkpoints(self.save_path, self.name_prefix)[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)


def _restore_env(model: BaseAlgorithm, state: dict[str, Any], strict: bool) -> None:
    """Reset the model's fresh env from the saved generators into the checkpoint's episode starts."""
    env = model.get_env()
    assert env is not None
    inner = env
    while isinstance(inner, VecEnvWrapper):
        inner = inner.venv
    inner._reset_seeds()  # EXPO.load seeded the env for its next reset: that would replace the saved generators
    if state["env_rng"] is not None:
        if len(state["env_rng"]) != env.num_envs:
            raise ValueError(f"The checkpoint was taken with {len(state['env_rng'])} envs, this env has {env.num_envs}")
        for index, generator_state in enumerate(state["env_rng"]):
            env.set_attr("np_random", generator_from_state(generator_state), indices=[index])
    observation = env.reset()
    vec_normalize = model.get_vec_normalize_env()
    saved = model._last_obs  # type: ignore[attr-defined]
    if vec_normalize is not None:
        observation, saved = vec_normalize.get_original_obs(), model._last_original_obs  # type: ignore[attr-defined]
        _restore_vec_normalize(vec_normalize, state["vec_normalize"])  # reset() updated its statistics: back to the saved
        vec_normalize.returns = np.zeros(env.num_envs)
    same = all(
        np.array_equal(observation[key], saved[key]) for key in saved  # type: ignore[index]
    ) if isinstance(saved, dict) else np.array_equal(observation, saved)  # fmt: skip
    if not same:
        message = (
            "The env did not return the checkpoint's observation when reset from the saved generator: its reset does "
            "not depend on its np_random alone (another generator, a clock, an external simulator), or it is not the "
            "env of the run."
        )
        if strict:
            raise RuntimeError(message + " resume(..., strict=False) continues from this new reset (not identically).")
        warnings.warn(message + " Continuing from the new reset: the run is no longer identical.", stacklevel=3)
        if vec_normalize is None:
            model._last_obs = observation  # type: ignore[attr-defined]
        else:
            model._last_obs = vec_normalize.normalize_obs(observation)  # type: ignore[attr-defined]
            model._last_original_obs = observation  # type: ignore[attr-defined]


def _restore_logger(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    """
    Continue the logger's run folder (TensorBoard writes a new event file in the same run; CSV, JSON and
    text logs go to ``progress_from_<steps>.csv`` etc. beside the old ones, which SB3 would truncate).
    """
    saved = state.get("logger")
    if not saved or not saved["dir"] or not set(saved["formats"]) - {"stdout"}:
        return  # the model's usual logger (SB3 configures one at learn())
    suffix = f"_from_{state['num_timesteps']}"
    outputs = [make_output_format(kind, saved["dir"], "" if kind in ("stdout", "tensorboard") else suffix)
               for kind in saved["formats"]]  # fmt: skip
    model.set_logger(Logger(folder=saved["dir"], output_formats=outputs))


def _load_model(
    checkpoint: pathlib.Path, state: dict[str, Any], algorithm: type[BaseAlgorithm], env: GymEnv, device: Any, kwargs: Any
) -> BaseAlgorithm:
    """
    The model and its replay buffer, with nothing unpickled: SB3's ``load`` gets a value for every pickled entry of
    the zip (the checkpoint's data, or the caller's arguments), and the buffer is read from JSON and ``.npz`` into the
    loaded model's own buffer.
    """
    overrides = kwargs.pop("custom_objects", None) or {}
    objects = custom_objects(checkpoint / "model.zip", state["zip_objects"], {**kwargs, **overrides})
    model = algorithm.load(checkpoint / "model.zip", env, device, custom_objects=objects, force_reset=False, **kwargs)
    buffer = read_data(checkpoint, BUFFER_FILES)
    restore_buffer(model.replay_buffer, buffer, checkpoint / BUFFER_FILES[0])  # type: ignore[attr-defined]
    if model.num_timesteps != state["num_timesteps"]:
        raise ValueError(
            f"{checkpoint}: model.zip is at {model.num_timesteps} steps, {STATE_FILE} at {state['num_timesteps']}"
        )
    return model


def resume(
    path: str | os.PathLike,
    env: GymEnv | str,
    algorithm: type[BaseAlgorithm] | None = None,
    device: th.device | str = "auto",
    strict: bool = True,
    **kwargs: Any,
) -> BaseAlgorithm:
    """
    Load a checkpoint of :class:`CheckpointCallback` so that training continues exactly as if it had
    never stopped (bit for bit on a CPU; the same model in the same state on a GPU)::

        model = resume("logs/checkpoints", "Pendulum-v1")          # the newest checkpoint in the folder
        model.learn(remaining_timesteps(model), reset_num_timesteps=False, callback=checkpoints)

    Restores the model, its replay buffer (offline data re-attached from its id or path), every step and
    update counter, the learning-rate progress, the torch / numpy / ``random`` generators, the action
    space's generator, the env (reset from its saved generator, checked against the checkpoint's
    observation), VecNormalize statistics and the logger's run (TensorBoard continues the same run).
    Pass ``reset_num_timesteps=False`` to ``learn``, or the step counters and the env start over.

    Nothing is unpickled, so a checkpoint from someone else cannot run code: ``model.zip`` is loaded with a data
    value for each of its pickled entries, and its tensors with ``weights_only=True``. A value a checkpoint cannot
    hold as data (a learning-rate function, an action noise or class of your own) is asked for by name: pass it
    again as a keyword argument (``resume(path, env, learning_rate=schedule)``).

    :param path: a checkpoint folder, or a folder of them (the newest is taken)
    :param env: a new env of the run, made as the first one was (a Gymnasium id, an env or a VecEnv)
    :param algorithm: the model's class (default :class:`~sb3_expo.EXPO`)
    :param device: where the model runs
    :param strict: raise if the env's reset does not give the checkpoint's observation (else warn and
        continue from the new reset)
    :param kwargs: passed to ``algorithm.load`` (e.g. ``offline_dataset=<new path>`` if the data moved); they also
        stand for the zip's entries of the same name
    :return: the model, ready for ``learn(..., reset_num_timesteps=False)``
    :raises FileNotFoundError: no checkpoint at ``path``
    :raises RuntimeError: (``strict``) the env could not be put back into the checkpoint's state
    """
    algorithm = EXPO if algorithm is None else algorithm
    checkpoint = latest_checkpoint(path)
    verify_manifest(checkpoint, HASHED_FILES)  # before anything is read: a changed file is named, not loaded
    state = read_data(checkpoint, STATE_FILES)
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise CheckpointCorruptedError(f"{checkpoint}/{STATE_FILE} is not in the format this version reads")
    model = _load_model(checkpoint, state, algorithm, gym.make(env) if isinstance(env, str) else env, device, kwargs)
    _restore_env(model, state, strict)
    _restore_logger(model, state)
    # Last: loading the model re-seeded every generator, and the env's reset may draw from numpy's global one.
    set_rng_state(state["rng"])
    model.action_space.np_random.bit_generator.state = state["action_space_rng"]
    return model


def remaining_timesteps(model: BaseAlgorithm) -> int:
    """The env steps a resumed model still has to run to reach the ``total_timesteps`` of the interrupted ``learn()``."""
    return max(model._total_timesteps - model.num_timesteps, 0)
