"""
Hyperparameter sweeps past one machine: rl-zoo's ``-optimize`` on one Optuna study in a shared database.

rl-zoo already takes ``--storage <database URL> --study-name <name>``: every ``sb3-expo train -optimize``
process started with the same two values, on any machine, joins the same study, and Optuna's database
gives every trial its own number. What this module adds for studies shared by several workers:

- **heartbeats** (:func:`shared_storage`): each running trial writes a heartbeat every
  ``--heartbeat-interval`` seconds. A trial whose worker died (killed, out of memory, machine lost)
  stops beating; after twice the interval any other worker marks it ``FAIL`` and queues its
  parameters again as a new trial (at most :data:`MAX_RETRY` times), which the next free worker runs;
- **a total that waits for the dead** (:class:`SharedStudyMaxTrials`): with ``--max-total-trials``
  a worker stops only when the study holds that many complete, pruned or running trials *and* none of
  the running ones belongs to a dead worker, so a study is never left with a trial nobody runs;
- **failed trials are recorded, not fatal**: a trial whose training hits a NaN (``FloatingPointError``)
  or runs out of GPU memory is recorded as ``FAIL`` and the worker goes on
  (:meth:`sb3_expo.zoo.experiment.ExpoExperimentManager.objective`); rl-zoo already records trials
  that raise ``ValueError`` or ``AssertionError`` as ``PRUNED``;
- ``sb3-expo trials`` prints a study's trials as a table, and ``sb3-expo best-params`` exports the best
  trial's hyperparameters as an entry of the shipped YAML format (``-conf`` then trains with it).

PostgreSQL (install the ``sweeps`` extra for its driver) serves any number of machines; an SQLite file
(``sqlite:///study.db``) serves the processes of one machine.
"""

import argparse
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.storages import RDBStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from sb3_expo.zoo import DEFAULT_HYPERPARAMS
from sb3_expo.zoo.hyperparams_opt import convert_expo_params
from sb3_expo.zoo.storage import database_url

# Seconds between two heartbeats of a running trial; a trial without one for twice as long is dead.
DEFAULT_HEARTBEAT_INTERVAL = 60
# How many times the parameters of a trial whose worker died are queued again.
MAX_RETRY = 2
# Attempts at creating the storage (Optuna's tables) before giving up.
CREATE_ATTEMPTS = 5
# Study user attribute holding the env id, so that best-params needs no --env.
ENV_ATTR = "env"
# Trial user attribute naming the worker that ran the trial: "<host>:<pid>".
WORKER_ATTR = "worker"


def is_database_url(storage: Any) -> bool:
    """Whether ``storage`` is a database URL (``postgresql://...``, ``sqlite:///...``), not rl-zoo's ``.log`` journal file."""
    return isinstance(storage, str) and "://" in storage


def shared_storage(
    url: str, heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL, max_retry: int | None = MAX_RETRY
) -> RDBStorage:
    """
    The Optuna storage of a study that several worker processes share.

    :param url: SQLAlchemy database URL: ``postgresql://user:password@host:5432/db`` (psycopg, from the
        ``sweeps`` extra: :func:`database_url`) or ``sqlite:///path.db`` (one machine)
    :param heartbeat_interval: seconds between two heartbeats of a running trial; one silent for twice
        as long is marked ``FAIL`` by the next worker that starts a trial
    :param max_retry: how many times a dead worker's trial is queued again (None: no limit)
    :return: an ``RDBStorage`` with heartbeats and the retry of dead workers' trials
    """
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):  # processes wait for each other's write lock instead of failing at once
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():  # the heartbeat and its retry callback are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
            retry = {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry)}
        else:
            retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry)}
        for attempt in range(CREATE_ATTEMPTS):
            try:
                return RDBStorage(
                    database_url(url), engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, **retry
                )
            except SQLAlchemyError:
                # Workers started together on a new database race to create Optuna's tables: the losers
                # fail on a duplicate table or type, and find the tables there on the next attempt.
                if attempt == CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark the running trials of dead workers ``FAIL`` (their parameters are queued again by the storage)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class SharedStudyMaxTrials(MaxTrialsCallback):
    """
    rl-zoo's ``--max-total-trials`` stop for a study shared by several workers.

    rl-zoo counts complete, pruned and running trials, so that workers do not overshoot the total by
    much. A running trial may belong to a worker that died, though, and only turns ``FAIL`` (and is
    queued again) once its heartbeat is stale. So when the total is reached while trials still run,
    this worker waits, checking every ``poll_interval`` seconds, until they finish or are found dead;
    in the second case the total is short again and the worker runs the queued retry.

    As with rl-zoo, two workers that finish a trial at the same moment may both start one more: a
    study can end with up to (workers − 1) trials more than the total.

    :param n_trials: the total
    :param states: the trial states counted (rl-zoo: complete, running, pruned)
    :param poll_interval: seconds between two checks while waiting
    """

    def __init__(
        self, n_trials: int, states: Container[TrialState] | None = (TrialState.COMPLETE,), poll_interval: float = 5.0
    ):
        super().__init__(n_trials, states=states)
        self.poll_interval = poll_interval

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        while True:
            fail_stale_trials(study)
            counted = study.get_trials(deepcopy=False, states=self._states)  # type: ignore[arg-type]
            if len(counted) < self._n_trials:
                return
            if not any(t.state == TrialState.RUNNING for t in counted):
                study.stop()
                return
            time.sleep(self.poll_interval)


# ------------------------------------------------------------------------------------- reading a study


def load_study(storage: str, study_name: str) -> optuna.Study:
    """A study of ``storage`` (database URL or rl-zoo's ``.log`` journal file), for reading."""
    if storage.endswith(".log"):
        journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))  # type: ignore[attr-defined]
        return optuna.load_study(study_name=study_name, storage=journal)
    return optuna.load_study(study_name=study_name, storage=database_url(storage))


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def trials_table(study: optuna.Study) -> str:
    """
    The study's trials as a Markdown table: number, state, value, the worker that ran it, its duration,
    the trial it retries (a dead worker's) and the sampled parameters.
    """
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for trial in trials for name in trial.params})
    header = ["trial", "state", "value", "worker", "seconds", "retry of", *names]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for trial in sorted(trials, key=lambda t: t.number):
        seconds = trial.duration.total_seconds() if trial.duration is not None else None
        cells = [
            trial.number,
            trial.state.name,
            trial.value if trial.values else None,
            trial.user_attrs.get(WORKER_ATTR),
            round(seconds, 1) if seconds is not None else None,
            trial.system_attrs.get("failed_trial"),
            *(trial.params.get(name) for name in names),
        ]
        rows.append("| " + " | ".join(_format(cell) for cell in cells) + " |")
    counts = {state.name: sum(trial.state == state for trial in trials) for state in TrialState}
    summary = ", ".join(f"{n} {name.lower()}" for name, n in counts.items() if n)
    return "\n".join(rows) + f"\n\n{len(trials)} trials: {summary}"


def best_params_entry(
    study: optuna.Study,
    env_id: str | None = None,
    config: str | os.PathLike = DEFAULT_HYPERPARAMS,
    converter: Callable[[dict[str, Any]], dict[str, Any]] = convert_expo_params,
) -> dict[str, dict[str, Any]]:
    """
    The best trial's hyperparameters as an entry of rl-zoo's YAML format: ``{env_id: {...}}``, the env's
    entry of ``config`` (if it has one) with the tuned values replaced, so that
    ``sb3-expo train --env <env_id> -conf <file>`` trains with them.

    :param study: a study with at least one complete trial
    :param env_id: the entry's key; default: the env the study was run on (recorded by ``sb3-expo train -optimize``)
    :param config: the YAML file whose entry is completed (default: the shipped hyperparameters)
    :param converter: sampled values -> EXPO arguments (``utd`` becomes ``gradient_steps`` and ``policy_delay``)
    :return: ``{env_id: hyperparameters}``
    :raises ValueError: no complete trial, or no env id
    """
    if not any(trial.state == TrialState.COMPLETE for trial in study.get_trials(deepcopy=False)):
        raise ValueError(f"study {study.study_name!r} has no complete trial yet")
    env_id = env_id or study.user_attrs.get(ENV_ATTR)
    if env_id is None:
        raise ValueError("the study does not record its env: pass --env")
    entries = yaml.safe_load(Path(config).read_text()) or {}
    entry = dict(entries.get(env_id, {}))
    entry.update(converter(study.best_trial.params))
    return {env_id: entry}


def _parse(command: str, argv: Sequence[str]) -> argparse.Namespace:
    description = {
        "trials": "Print the trials of an Optuna study as a Markdown table.",
        "best-params": "Export the best trial of an Optuna study as a YAML entry for `sb3-expo train -conf`.",
    }[command]
    parser = argparse.ArgumentParser(prog=f"sb3-expo {command}", description=description)
    parser.add_argument("--storage", required=True, help="database URL (postgresql://..., sqlite:///...) or .log file")
    parser.add_argument("--study-name", required=True)
    if command == "best-params":
        parser.add_argument("--env", default=None, help="the YAML entry's key (default: the env the study ran on)")
        parser.add_argument("-conf", "--conf-file", default=str(DEFAULT_HYPERPARAMS), help="the YAML whose entry is completed")
        parser.add_argument("-o", "--output", default=None, help="write the YAML there instead of printing it")
    return parser.parse_args(argv)


def main(command: str, argv: Sequence[str]) -> None:
    """
    ``sb3-expo trials`` and ``sb3-expo best-params``.

    :param command: ``trials`` or ``best-params``
    :param argv: the command's options
    """
    args = _parse(command, argv)
    study = load_study(args.storage, args.study_name)
    if command == "trials":
        print(trials_table(study))
        return
    try:
        entry = best_params_entry(study, args.env, args.conf_file)
    except ValueError as error:
        raise SystemExit(f"sb3-expo best-params: {error}") from None
    best = study.best_trial
    header = f"# Best trial {best.number} of study {study.study_name!r} (value {best.value:.6g}), from sb3-expo best-params\n"
    text = header + yaml.safe_dump(entry, sort_keys=False)
    if args.output is None:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"Wrote {args.output}: sb3-expo train --env {next(iter(entry))} -conf {args.output}", file=sys.stderr)
