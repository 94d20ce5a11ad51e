"""
The two names a shared study or job table is reached by, without Optuna: the database URL as SQLAlchemy
should read it, and this worker's name. Used by :mod:`sb3_expo.zoo.sweeps` and ``benchmarks/learning/claims.py``.
"""

import os
import socket


def database_url(url: str) -> str:
    """
    ``postgresql://...`` with the psycopg (3) driver of the ``sweeps`` extra named explicitly
    (``postgresql+psycopg://...``): SQLAlchemy 2.0 would pick psycopg2 for the bare scheme, 2.1 picks
    psycopg. URLs that name a driver, and other databases, are returned as they are.
    """
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def worker_name() -> str:
    """This worker's name in the trial table: ``<host>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"
