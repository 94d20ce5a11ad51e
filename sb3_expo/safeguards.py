"""
What a long run needs from an SB3 off-policy algorithm beyond SB3 itself: saves that an interrupt cannot break,
and env steps checked before they enter the replay buffer. A mixin, placed before the SB3 algorithm class.
"""

import glob
import io
import os
import pathlib
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer

from sb3_expo.checks import non_finite_error, non_finite_part

# A temporary file or folder of a save is stale (left by a killed save) once its process is gone and it has not been
# written to for this long, or after a day whatever its process id says (it may be another machine's).
STALE_AFTER_S, STALE_ANYWAY_AFTER_S = 60.0, 86400.0


def temporary_path(destination: pathlib.Path) -> pathlib.Path:
    """
    A temporary name beside ``destination`` that no other save uses: ``.<name>.<pid>-<thread>-<random>.tmp``. Two
    saves to one path (threads, or processes sharing a run folder) wrote the same temporary file, and one renamed
    the other's half-written file into place.
    """
    return destination.with_name(f".{destination.name}.{os.getpid()}-{threading.get_ident()}-{secrets.token_hex(4)}.tmp")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _is_stale(path: pathlib.Path, prefix: str) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:  # its save just finished
        return False
    pid = path.name[len(prefix) : -len(".tmp")].split("-")[0]
    dead = not pid.isdigit() or not _process_alive(int(pid))
    return age > STALE_ANYWAY_AFTER_S or (dead and age > STALE_AFTER_S)


def remove_stale_temporaries(destination: pathlib.Path) -> None:
    """Remove the temporary files and folders that killed saves to ``destination`` left (they can be the model's size)."""
    prefix = f".{destination.name}."
    for path in destination.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        if _is_stale(path, prefix):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def write_atomically(
    path: str | os.PathLike | io.BufferedIOBase, suffix: str, write: Callable[[io.BufferedIOBase], None]
) -> None:
    """
    Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    SB3 opens the destination for writing first, so a process killed while it writes (a cluster
    preemption, Ctrl-C at the wrong moment) leaves a truncated file in place of the last good one. A
    rename within a folder is atomic: after a crash at any instant, ``path`` holds either the previous
    file or the complete new one. Each save writes its own temporary file (:func:`temporary_path`), so
    concurrent saves to one path leave one of the complete files; temporary files that killed saves left
    are removed (:func:`remove_stale_temporaries`).

    :param path: the destination, as SB3 takes it: without a suffix, ``.{suffix}`` is appended (SB3's rule).
        A file object is written to directly (its owner decides what is atomic).
    :param suffix: SB3's suffix for this kind of file (``"zip"`` for models, ``"pkl"`` for replay buffers)
    :param write: writes the whole content to the open binary file it is given
    """
    if not isinstance(path, (str, os.PathLike)):
        write(path)
        return
    destination = pathlib.Path(path)
    if destination.suffix == "":
        destination = destination.with_name(f"{destination.name}.{suffix}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(destination)
    temporary = temporary_path(destination)
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def describe_env(env: Any) -> str:
    """The env for a message: its gymnasium repr (``<TimeLimit<PendulumEnv<Pendulum-v1>>>``), else its id or class."""
    inner = env
    while hasattr(inner, "venv"):  # VecEnv wrappers (VecNormalize, ...)
        inner = inner.venv
    if getattr(inner, "envs", None):
        return str(inner.envs[0])
    try:
        spec = inner.get_attr("spec", indices=[0])[0]
    except (AttributeError, IndexError):
        spec = None
    return spec.id if spec is not None else type(inner).__name__


class Safeguards:
    """Atomic :meth:`save` / :meth:`save_replay_buffer`, and :func:`check_finite_env_step` on every stored transition."""

    num_timesteps: int
    env: Any
    _vec_normalize_env: Any
    _last_obs: Any
    _last_original_obs: Any

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """
        SB3's, after :func:`non_finite_part` found every stored part finite (the observation, the reward, the next or
        terminal observation): on a NaN the model and the buffer stay as they were, and learning can go on.
        """
        vec_normalize = self._vec_normalize_env  # then the buffer stores the original observations
        last_obs = self._last_obs if vec_normalize is None else self._last_original_obs
        stored_obs = new_obs if vec_normalize is None else vec_normalize.get_original_obs()
        what = non_finite_part(last_obs, stored_obs, reward, dones, infos)
        if what is not None:
            raise non_finite_error(what, self.num_timesteps, f"The env {describe_env(self.env)}")
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """SB3's ``save``, written to a temporary file and renamed: an interrupted save never breaks the last good model."""
        write_atomically(path, "zip", lambda file: super(Safeguards, self).save(file, exclude, include))

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """SB3's ``save_replay_buffer`` (offline data excluded), written atomically like :meth:`save`."""
        write_atomically(path, "pkl", lambda file: super(Safeguards, self).save_replay_buffer(file))
