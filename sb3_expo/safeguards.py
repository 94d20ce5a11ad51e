"""
What a long run needs from an SB3 off-policy algorithm beyond SB3 itself: saves that an interrupt cannot break,
and env steps checked before they enter the replay buffer. A mixin, placed before the SB3 algorithm class.
"""

import io
import os
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer


def write_atomically(
    path: str | os.PathLike | io.BufferedIOBase, suffix: str, write: Callable[[io.BufferedIOBase], None]
) -> None:
    """
    Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    SB3 opens the destination for writing first, so a process killed while it writes (a cluster
    preemption, Ctrl-C at the wrong moment) leaves a truncated file in place of the last good one. A
    rename within a folder is atomic: after a crash at any instant, ``path`` holds either the previous
    file or the complete new one.

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
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def check_finite_env_step(reward: np.ndarray, new_obs: np.ndarray | dict[str, np.ndarray], env_step: int) -> None:
    """Refuse a non-finite reward or observation before it enters the replay buffer (it would poison every batch)."""
    observations = new_obs.values() if isinstance(new_obs, dict) else [new_obs]
    for what, values in [("reward", [reward]), ("observation", observations)]:
        if not all(np.isfinite(value).all() for value in values):
            raise ValueError(
                f"The env returned a non-finite {what} at env step {env_step}. It was not stored: the replay buffer and "
                "the model are unchanged. Fix the env (or clip/normalise its output) and continue with "
                "model.set_env(env) and model.learn(..., reset_num_timesteps=False)."
            )


class Safeguards:
    """Atomic :meth:`save` / :meth:`save_replay_buffer`, and :func:`check_finite_env_step` on every stored transition."""

    num_timesteps: int

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """SB3's, after :func:`check_finite_env_step`: the model and the buffer stay as they were on a NaN."""
        check_finite_env_step(reward, new_obs, self.num_timesteps)
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
