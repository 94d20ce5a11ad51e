"""
The ``sb3-expo`` command: rl-zoo's ``train`` and ``enjoy`` with EXPO registered as ``expo`` (the default
``--algo``) and the shipped hyperparameters (``-conf`` names another file)::

    sb3-expo train --env sb3_expo/AntMaze-large-diverse-v1
    sb3-expo enjoy --env sb3_expo/AntMaze-large-diverse-v1 -f logs --no-render
    sb3-expo train --env Pendulum-v1 -optimize --n-trials 20 -n 20000

Every other option is rl-zoo's (``sb3-expo train --help``), plus two of ours: ``--resume RUN_FOLDER``
continues an interrupted run exactly from the newest checkpoint that ``--save-freq N`` wrote under
``RUN_FOLDER/checkpoints`` (:mod:`sb3_expo.zoo.resume`), and ``--heartbeat-interval SECONDS`` for
``-optimize`` on a database ``--storage`` (:mod:`sb3_expo.zoo.sweeps`; default 60). Two commands read
such a study::

    sb3-expo trials --storage postgresql://host/db --study-name pendulum
    sb3-expo best-params --storage postgresql://host/db --study-name pendulum -o best.yml
"""

import sys
from collections.abc import Callable, Sequence

from sb3_expo.optional import import_optional

COMMANDS = ("train", "enjoy")
STUDY_COMMANDS = ("trials", "best-params")
USAGE = (
    f"usage: sb3-expo {{{','.join(COMMANDS)}}} [rl-zoo options]   (sb3-expo train --help for the options)\n"
    "       sb3-expo train [the interrupted run's options] --resume RUN_FOLDER   (continue it from its checkpoints)\n"
    f"       sb3-expo {{{','.join(STUDY_COMMANDS)}}} --storage URL --study-name NAME   (an -optimize study)"
)


def register_expo(for_playing: bool = False) -> None:
    """
    Register EXPO into rl-zoo's tables: the algorithm as ``expo``, its Optuna sampler and converter,
    and :class:`~sb3_expo.zoo.experiment.ExpoExperimentManager` as the manager ``train`` builds.

    :param for_playing: register the loader of ``enjoy`` (no replay buffer memory, no offline data)
    """
    import rl_zoo3.train
    from rl_zoo3 import hyperparams_opt, utils

    from sb3_expo.expo import EXPO
    from sb3_expo.zoo.experiment import ExpoExperimentManager, EXPOForPlaying
    from sb3_expo.zoo.hyperparams_opt import convert_expo_params, sample_expo_params

    utils.ALGOS["expo"] = EXPOForPlaying if for_playing else EXPO
    hyperparams_opt.HYPERPARAMS_SAMPLER["expo"] = sample_expo_params
    hyperparams_opt.HYPERPARAMS_CONVERTER["expo"] = convert_expo_params
    rl_zoo3.train.ExperimentManager = ExpoExperimentManager  # type: ignore[misc]


def _command(name: str) -> Callable[[], None]:
    import rl_zoo3.enjoy
    import rl_zoo3.train

    return {"train": rl_zoo3.train.train, "enjoy": rl_zoo3.enjoy.enjoy}[name]


def _take_heartbeat_interval(options: list[str]) -> list[str]:
    """Remove ``--heartbeat-interval N`` (rl-zoo does not know it) and set it on the experiment manager."""
    for i, option in enumerate(options):
        if option == "--heartbeat-interval" or option.startswith("--heartbeat-interval="):
            value = option.partition("=")[2] if "=" in option else (options[i + 1] if i + 1 < len(options) else "")
            if not value.isdigit() or int(value) < 1:
                raise SystemExit(f"sb3-expo: --heartbeat-interval needs a whole number of seconds >= 1, got {value!r}")
            from sb3_expo.zoo.experiment import ExpoExperimentManager

            ExpoExperimentManager.heartbeat_interval = int(value)
            return options[:i] + options[i + (1 if "=" in option else 2) :]
    return options


def main(argv: Sequence[str] | None = None) -> None:
    """
    Entry point of ``sb3-expo``.

    :param argv: ``[command, rl-zoo options...]`` (default ``sys.argv[1:]``)
    :raises ImportError: rl-zoo is not installed (the message names the ``zoo`` extra)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STUDY_COMMANDS:
        import_optional("optuna", "zoo")
        from sb3_expo.zoo import sweeps

        sweeps.main(argv[0], argv[1:])
        return
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    import_optional("rl_zoo3", "zoo")
    import sb3_expo.tasks  # noqa: F401  (registers the paper's task ids)

    command, options = argv[0], _take_heartbeat_interval(argv[1:])
    register_expo(for_playing=command == "enjoy")
    if command == "train":  # exact checkpoints with --save-freq, and --resume FOLDER (sb3_expo.zoo.resume)
        from sb3_expo.zoo.resume import take_resume_option

        options = take_resume_option(options)
    if "--algo" not in options:
        options = ["--algo", "expo", *options]
    sys.argv = [f"sb3-expo {command}", *options]
    _command(command)()


if __name__ == "__main__":
    main()
