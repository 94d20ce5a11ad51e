"""
The learning benchmark's jobs shared by several machines through one database (``run.py --storage``).

Every worker process, on any machine, registers the same task × method × seed jobs in one table and
then claims them one at a time until none is left:

- a claim is one ``UPDATE ... WHERE version = <the version read>``: of two workers that read the same
  pending job, exactly one updates its row, and the other looks for the next job, so two workers never
  run the same job;
- while a job runs, its worker writes a heartbeat every ``heartbeat_interval`` seconds. A job whose
  heartbeat is older than ``grace_period`` (its worker was killed or its machine lost) is claimed again
  by the next free worker, which resumes it from its last checkpoint when the results folder is shared
  (NFS), or starts it again otherwise. A worker with nothing left to claim waits until the jobs still
  running elsewhere are done, in case one of them has to be taken over;
- a job that raises is marked ``failed`` with the error; running the command again queues failed jobs
  again, as rerunning it does without a database.

The same database URLs as ``sb3-expo train -optimize --storage`` work: PostgreSQL (the ``sweeps``
extra installs its driver) for many machines, an SQLite file for the processes of one machine.
Heartbeats use each worker's clock: machines need clocks that agree to well within the grace period.
Only SQLAlchemy (a dependency of Optuna) is needed: no torch, so the table can be read from anywhere.
"""

import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from sb3_expo.zoo.storage import database_url, worker_name

TABLE = "sb3_expo_benchmark_jobs"
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
DEFAULT_HEARTBEAT_INTERVAL = 30

metadata = sa.MetaData()
jobs_table = sa.Table(
    TABLE,
    metadata,
    sa.Column("sweep", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, default=PENDING),
    sa.Column("version", sa.Integer, nullable=False, default=0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("worker", sa.String(256)),
    sa.Column("heartbeat", sa.Float),
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("message", sa.Text),
)


@dataclass(frozen=True)
class Claim:
    """A job this worker holds: its name and the row version its updates must match."""

    name: str
    version: int
    attempt: int


class JobBoard:
    """
    The table of one sweep's jobs in a shared database.

    :param url: SQLAlchemy database URL (``postgresql://user@host/db``, ``sqlite:///jobs.db``)
    :param sweep: the sweep's name: several sweeps can share a table
    :param heartbeat_interval: seconds between two heartbeats of a running job
    :param grace_period: seconds without a heartbeat after which a running job is claimed again
        (default: three heartbeat intervals)
    :param worker: this worker's name in the table (default ``<host>:<pid>``)
    """

    def __init__(
        self,
        url: str,
        sweep: str = "learning",
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        grace_period: float | None = None,
        worker: str | None = None,
    ):
        connect_args = {"timeout": 60} if url.startswith("sqlite") else {}
        self.engine = sa.create_engine(database_url(url), pool_pre_ping=True, connect_args=connect_args)
        self.sweep = sweep
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = 3 * heartbeat_interval if grace_period is None else grace_period
        self.worker = worker or worker_name()
        self._create_table()

    def _create_table(self) -> None:
        for attempt in range(5):  # workers starting together race to create it: the losers find it there
            try:
                metadata.create_all(self.engine, checkfirst=True)
                return
            except (IntegrityError, DBAPIError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _where(self, name: str) -> sa.ColumnElement[bool]:
        return (jobs_table.c.sweep == self.sweep) & (jobs_table.c.name == name)

    def add(self, names: Sequence[str]) -> int:
        """
        Register jobs (in the order they should run); jobs already there are kept, failed ones queued again.

        :return: how many jobs were new
        """
        added = 0
        for position, name in enumerate(names):
            try:
                with self.engine.begin() as connection:
                    connection.execute(jobs_table.insert().values(sweep=self.sweep, name=name, position=position))
                added += 1
            except IntegrityError:  # registered already, maybe by another worker a moment ago
                pass
        with self.engine.begin() as connection:
            failed = jobs_table.c.state == FAILED
            connection.execute(
                jobs_table.update()
                .where((jobs_table.c.sweep == self.sweep) & jobs_table.c.name.in_(list(names)) & failed)
                .values(state=PENDING, version=jobs_table.c.version + 1)
            )
        return added

    def claim(self) -> Claim | None:
        """
        Take the first pending job, or a running one whose heartbeat is stale; None when none is left.
        The update succeeds only if nobody changed the row since it was read.
        """
        while True:
            stale_before = time.time() - self.grace_period
            with self.engine.connect() as connection:
                candidates = connection.execute(
                    sa.select(jobs_table.c.name, jobs_table.c.version, jobs_table.c.attempts)
                    .where(jobs_table.c.sweep == self.sweep)
                    .where(
                        (jobs_table.c.state == PENDING)
                        | ((jobs_table.c.state == RUNNING) & (jobs_table.c.heartbeat < stale_before))
                    )
                    .order_by(jobs_table.c.position)
                ).all()
            if not candidates:
                return None
            now = time.time()
            for name, version, attempts in candidates:
                with self.engine.begin() as connection:
                    updated = connection.execute(
                        jobs_table.update()
                        .where(self._where(name) & (jobs_table.c.version == version))
                        .values(
                            state=RUNNING,
                            version=version + 1,
                            attempts=attempts + 1,
                            worker=self.worker,
                            heartbeat=now,
                            started=now,
                            finished=None,
                            message=None,
                        )
                    ).rowcount
                if updated == 1:
                    return Claim(name, version + 1, attempts + 1)
            # every candidate was taken by others in the meantime: read again

    def beat(self, claim: Claim) -> bool:
        """Record that the job is alive; False if it was claimed by another worker meanwhile."""
        with self.engine.begin() as connection:
            return (
                connection.execute(
                    jobs_table.update()
                    .where(self._where(claim.name) & (jobs_table.c.version == claim.version))
                    .values(heartbeat=time.time())
                ).rowcount
                == 1
            )

    def finish(self, claim: Claim, state: str, message: str = "") -> bool:
        """Mark the job ``done`` or ``failed``; False if it was claimed by another worker meanwhile."""
        with self.engine.begin() as connection:
            return (
                connection.execute(
                    jobs_table.update()
                    .where(self._where(claim.name) & (jobs_table.c.version == claim.version))
                    .values(state=state, version=claim.version + 1, finished=time.time(), message=message[-4000:])
                ).rowcount
                == 1
            )

    @contextmanager
    def heartbeat(self, claim: Claim) -> Iterator[None]:
        """Beat every ``heartbeat_interval`` seconds from a background thread while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_interval):
                try:
                    if not self.beat(claim):
                        return
                except Exception:  # a lost connection: try again at the next beat
                    pass

        thread = threading.Thread(target=beat, name=f"heartbeat {claim.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def running(self) -> int:
        """How many of the sweep's jobs are running (here or elsewhere, alive or not yet found dead)."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count())
                .select_from(jobs_table)
                .where((jobs_table.c.sweep == self.sweep) & (jobs_table.c.state == RUNNING))
            ).scalar_one()

    def rows(self) -> list[dict]:
        """Every job of the sweep, in order: name, state, attempts, worker, seconds, message."""
        with self.engine.connect() as connection:
            result = connection.execute(
                sa.select(jobs_table).where(jobs_table.c.sweep == self.sweep).order_by(jobs_table.c.position)
            )
            return [dict(row._mapping) for row in result]

    def table(self) -> str:
        """The sweep's jobs as a Markdown table."""
        lines = ["| job | state | attempts | worker | seconds |", "|---|---|---|---|---|"]
        for row in self.rows():
            seconds = row["finished"] - row["started"] if row["finished"] and row["started"] else None
            seconds_text = f"{seconds:.1f}" if seconds is not None else ""
            lines.append(f"| {row['name']} | {row['state']} | {row['attempts']} | {row['worker'] or ''} | {seconds_text} |")
        return "\n".join(lines)


def work(board: JobBoard, run: Callable[[str], str], log: Callable[[str], None] = print) -> tuple[int, int]:
    """
    Claim and run jobs until none is left. While the last jobs run on other workers this one waits, so
    that it can take over a job whose worker died.

    :param board: the shared table
    :param run: runs the named job, returns a one-line summary (an exception marks the job failed)
    :param log: where the summaries go
    :return: (jobs done, jobs failed) by this worker
    """
    done = failed = 0
    while True:
        claim = board.claim()
        if claim is None:
            if not board.running():
                break
            # Jobs still run elsewhere: wait, to take one over if its worker turns out to be dead.
            time.sleep(min(board.heartbeat_interval, board.grace_period / 2))
            continue
        retry = f" (attempt {claim.attempt})" if claim.attempt > 1 else ""
        log(f"{board.worker} claimed {claim.name}{retry}")
        with board.heartbeat(claim):
            try:
                summary, state = run(claim.name), DONE
            except Exception:
                summary, state = f"{claim.name}: FAILED\n{traceback.format_exc()}", FAILED
        if board.finish(claim, state, summary):
            done, failed = done + (state == DONE), failed + (state == FAILED)
        else:
            summary += " (the job had been claimed again meanwhile: result not recorded)"
        log(summary)
    return done, failed
