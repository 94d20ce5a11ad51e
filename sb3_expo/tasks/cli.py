"""
The one command line that builds the datasets made on this machine (:data:`~sb3_expo.tasks.LOCAL_DATASETS`)
into ``$MINARI_DATASETS_PATH``: the command every "dataset not found" error of a local dataset names::

    python -m sb3_expo.tasks sb3_expo/pointmaze-umaze-mixed-v1
    python -m sb3_expo.tasks sb3_expo/pointmaze-large-noisy-v0 --n-episodes 80 --save-as me/pointmaze-large-v0
    python -m sb3_expo.tasks sb3_expo/pen-binary-cloned-v2 --download

An existing dataset is reused unless ``--overwrite``; the options a dataset's builder has no argument
for are refused rather than ignored.
"""

import argparse
import dataclasses
import inspect
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from sb3_expo.data.minari import DatasetNotFoundError
from sb3_expo.tasks import LOCAL_DATASETS
from sb3_expo.tasks.recording import MixtureSettings

# Command-line options -> builder arguments; a builder without the argument refuses the option.
BUILDER_OPTIONS = ("n_episodes", "expert_fraction", "noise_std", "seed", "download", "dataset_id")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_expo.tasks",
        description="Build a Minari dataset of sb3_expo's tasks locally, into $MINARI_DATASETS_PATH (no download).",
    )
    parser.add_argument(
        "dataset", choices=sorted(LOCAL_DATASETS), metavar="DATASET_ID", help=f"one of: {', '.join(sorted(LOCAL_DATASETS))}"
    )
    parser.add_argument("--save-as", dest="dataset_id", help="write it under another Minari id (scripted datasets)")
    parser.add_argument("--n-episodes", type=int, help="default: the dataset's (scripted datasets)")
    parser.add_argument("--expert-fraction", type=float, help="default: the dataset's (scripted datasets)")
    parser.add_argument("--noise-std", type=float, help="default: the dataset's (scripted datasets)")
    parser.add_argument("--seed", type=int, help="default 0 (scripted datasets)")
    parser.add_argument("--download", action="store_true", default=None, help="download the source (Adroit)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild the dataset if it exists")
    return parser.parse_args(argv)


def _accepted(builder: Any) -> set[str]:
    """The builder's arguments; a scripted dataset's builder takes the fields of MixtureSettings as ``**settings``."""
    parameters = inspect.signature(builder).parameters
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return set(parameters) | {field.name for field in dataclasses.fields(MixtureSettings)}
    return set(parameters)


def _builder_kwargs(args: argparse.Namespace, builder: Any) -> dict[str, Any]:
    """The given options as the builder's arguments, or an error naming those it has no argument for."""
    given = {name: getattr(args, name) for name in BUILDER_OPTIONS if getattr(args, name) is not None}
    refused = [name for name in given if name not in _accepted(builder)]
    if refused:
        flags = ", ".join("--save-as" if name == "dataset_id" else "--" + name.replace("_", "-") for name in refused)
        raise SystemExit(f"python -m sb3_expo.tasks: {args.dataset} takes no {flags}")
    return {**given, "overwrite": args.overwrite}


def main(argv: Sequence[str] | None = None) -> None:
    """
    Build (or reuse) the dataset, then print where it lives and how its episodes ended.

    :param argv: arguments (default ``sys.argv[1:]``)
    """
    args = _parse_args(argv)
    builder = LOCAL_DATASETS[args.dataset]
    kwargs = _builder_kwargs(args, builder)
    start = time.perf_counter()
    try:
        dataset = builder(**kwargs)
    except DatasetNotFoundError as error:  # a relabelled dataset's source: on this command line, --download
        raise SystemExit(f"{error}\nHere: python -m sb3_expo.tasks {args.dataset} --download") from error
    from minari.storage.datasets_root_dir import get_dataset_path

    terminated = np.mean([bool(episode.terminations[-1]) for episode in dataset.iterate_episodes()])
    print(f"Dataset '{dataset.id}' at {get_dataset_path(dataset.id)} ({time.perf_counter() - start:.1f} s)")
    print(f"{dataset.total_episodes} episodes, {dataset.total_steps} transitions")
    mean_length = dataset.total_steps / dataset.total_episodes
    print(f"Episodes ended by termination (at the goal): {terminated:.2f}, mean episode length {mean_length:.1f}")
