"""
A throwaway PostgreSQL server for the sweep tests: ``initdb`` on a temporary directory, ``pg_ctl start`` on
a free localhost port (and a Unix socket in the same directory), ``pg_ctl stop`` at the end.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user (or ``nobody``),
which owns the temporary directory.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN_DIRS = ("/usr/local/bin", "/usr/lib/postgresql/15/bin")


def find_binary(name: str) -> str | None:
    """``initdb`` / ``pg_ctl`` on PATH or in the usual PostgreSQL 15 folders."""
    found = shutil.which(name)
    if found:
        return found
    for folder in BIN_DIRS:
        path = Path(folder) / name
        if path.exists():
            return str(path)
    return None


def missing_binaries() -> str | None:
    """Why the server cannot start here (None when it can)."""
    missing = [name for name in ("initdb", "pg_ctl") if find_binary(name) is None]
    return f"PostgreSQL binaries not found: {', '.join(missing)} (install PostgreSQL 15)" if missing else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> str | None:
    """The user the server runs as: None (this one) unless this is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


@contextmanager
def postgres_server() -> Iterator[str]:
    """
    Start a PostgreSQL server; yield its SQLAlchemy URL (database ``postgres``, user ``postgres``, trust
    authentication, localhost only); stop it and delete its files at the end.
    """
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    assert initdb and pg_ctl, missing_binaries()
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="sb3_expo_pg_"))
    data, log = root / "data", root / "server.log"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o700)
    port = free_port()
    run = {"user": user, "check": True, "capture_output": True, "text": True, "cwd": root}
    try:
        subprocess.run([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"], **run)
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        subprocess.run([pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"], **run)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], **{**run, "check": False})
    except subprocess.CalledProcessError as error:
        server_log = log.read_text() if log.exists() else ""
        raise RuntimeError(f"{error.cmd} failed:\n{error.stdout}\n{error.stderr}\n{server_log}") from error
    finally:
        shutil.rmtree(root, ignore_errors=True)
