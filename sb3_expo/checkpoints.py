"""Saving that survives being interrupted: every file is written under a temporary name, then renamed."""

import io
import os
import pathlib
from collections.abc import Callable


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
