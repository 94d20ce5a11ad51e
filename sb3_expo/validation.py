"""
Constructor arguments checked by type and range before anything is built.

A setting that passes these checks trains; one that does not is refused at construction with its name, its value
and what is accepted. Without them a bad value passed SB3's and PyTorch's own checks and crashed much later, far
from its cause: ``batch_size=0`` as a reshape error in the first update, ``diffusion_steps=2.5`` inside
``torch.randn``, ``offline_ratio=nan`` as a message saying that ``nan`` disagrees with ``nan``.
"""

import math
import numbers
from collections.abc import Callable
from typing import Any

# torch.compile's modes, and EXPO's "auto" (decided at set-up).
COMPILE_MODES = (None, "auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"


def check_int(name: str, value: Any, minimum: int | None, hint: str = "") -> None:
    """
    Refuse anything but an int ``>= minimum`` (numpy ints pass; bools and floats such as ``2.0`` do not: a float
    count ends in a PyTorch shape error, and ``True`` as a count is always a mistake).

    :raises TypeError: not an int
    :raises ValueError: below ``minimum`` (None: any int)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}){hint}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}{hint}")


def check_number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> None:
    """
    Refuse anything but a real number in the interval (NaN is in no interval; infinities only where a bound is
    infinite and open, which no EXPO option allows: ``high=inf`` means finite and unbounded above).

    :raises TypeError: not a real number
    :raises ValueError: NaN, infinite or outside the interval
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}){hint}")
    value = float(value)
    inside = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not math.isfinite(value) or not inside:
        bounded = low > -math.inf or high < math.inf
        where = f"a finite number in {_interval(low, high, low_open, high_open)}" if bounded else "a finite number"
        raise ValueError(f"{name} must be {where}, got {value}{hint}")


def check_learning_rate(learning_rate: float | Callable[[float], float]) -> None:
    """A schedule (a callable of the remaining progress), or a finite number >= 0 (rl-zoo's enjoy loads models with 0)."""
    if not callable(learning_rate):
        check_number("learning_rate", learning_rate, 0.0)


def check_temperature(ent_coef: Any, target_entropy: Any) -> None:
    """``ent_coef``: ``"auto"``, ``"auto_<α0 > 0>"`` or a fixed α >= 0; ``target_entropy``: ``"auto"`` or a finite number."""
    if isinstance(ent_coef, str):
        if ent_coef != "auto" and not ent_coef.startswith("auto_"):
            raise ValueError(f"ent_coef must be 'auto', 'auto_<initial α>' or a number >= 0, got {ent_coef!r}")
        if ent_coef.startswith("auto_"):
            try:
                initial = float(ent_coef[len("auto_") :])
            except ValueError:
                raise ValueError(f"ent_coef {ent_coef!r}: the initial value of α after 'auto_' is not a number") from None
            check_number("The initial value of ent_coef", initial, 0.0, low_open=True, hint=f" (ent_coef={ent_coef!r})")
    else:
        check_number("ent_coef", ent_coef, 0.0)
    if not (isinstance(target_entropy, str) and target_entropy == "auto"):
        check_number("target_entropy", target_entropy, hint=" ('auto' or a finite number)")


def check_train_freq(train_freq: Any) -> None:
    """``n`` or ``(n, "step" | "episode")``, ``n >= 1`` (SB3 asserts it only when the first rollout starts)."""
    frequency = train_freq
    if isinstance(train_freq, tuple):
        if len(train_freq) != 2:
            raise ValueError(f"train_freq must be an int or a tuple (n, 'step' | 'episode'), got {train_freq!r}")
        frequency, unit = train_freq
        if getattr(unit, "value", unit) not in ("step", "episode"):  # a TrainFrequencyUnit after a load
            raise ValueError(f"The unit of train_freq must be 'step' or 'episode', got {unit!r}")
    check_int("train_freq", frequency, 1, " (env steps or episodes between two updates)")


def check_algorithm_settings(settings: dict[str, Any]) -> None:
    """
    EXPO's own arguments and the SB3 ones it uses (the policy's are checked by
    :func:`check_policy_options`), before the replay buffer or any network is built.

    :param settings: the model's attributes by name (``vars(model)``)
    """
    check_int("batch_size", settings["batch_size"], 1, " (rows per minibatch)")
    check_int("buffer_size", settings["buffer_size"], 1)
    check_int("learning_starts", settings["learning_starts"], 0)
    check_int("gradient_steps", settings["gradient_steps"], None)  # its range: check_update_schedule
    check_int("policy_delay", settings["policy_delay"], 1)
    check_int("stats_window_size", settings["_stats_window_size"], 1)
    check_number("tau", settings["tau"], 0.0, 1.0)
    check_number("gamma", settings["gamma"], 0.0, 1.0)
    check_number("base_ema_rate", settings["base_ema_rate"], 0.0, 1.0, low_open=True)
    check_number("offline_ratio", settings["offline_ratio"], 0.0, 1.0, hint=" (the share of offline rows per minibatch)")
    check_number("reward_scale", settings["reward_scale"])
    check_number("reward_shift", settings["reward_shift"])
    if settings["policy_lr_decay_steps"] is not None:
        check_int("policy_lr_decay_steps", settings["policy_lr_decay_steps"], 1, " (or None: no decay)")
    check_learning_rate(settings["learning_rate"])
    check_train_freq(settings["train_freq"])
    check_temperature(settings["ent_coef"], settings["target_entropy"])
    if settings["compile_mode"] not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {settings['compile_mode']!r}")


def check_policy_options(options: dict[str, Any]) -> None:
    """
    The policy's options (:class:`~sb3_expo.policies.ExpoPolicy`): counts are ints >= 1 and K <= N, rates in range.
    ``n_edit_samples=0`` is refused: every update trains the edit actor and the temperature on edits that no
    candidate would use (and the candidates' shapes assume K >= 1); the policy without edits is the base alone.
    """
    check_int("n_critics", options["n_critics"], 1, " (E, the size of the critic ensemble)")
    check_int("critic_subset_size", options["critic_subset_size"], 1)
    if options["critic_subset_size"] > options["n_critics"]:
        raise ValueError(
            f"critic_subset_size must be in [1, n_critics={options['n_critics']}], got {options['critic_subset_size']}"
        )
    check_int("n_base_samples", options["n_base_samples"], 1, " (N, base samples per state)")
    check_int(
        "n_edit_samples", options["n_edit_samples"], 1,
        " (K, edited base samples per state: EXPO without edits is its base policy alone, which "
        "sb3_expo.evaluation.BasePolicyActor(model) acts with)",
    )  # fmt: skip
    if options["n_edit_samples"] > options["n_base_samples"]:
        raise ValueError(
            f"Need n_edit_samples <= n_base_samples (the edit actor edits the first K of the N base samples), got "
            f"n_base_samples={options['n_base_samples']}, n_edit_samples={options['n_edit_samples']}"
        )
    check_number("edit_scale (β)", options["edit_scale"], 0.0, low_open=True)
    if options["diffusion_steps"] is not None:  # None: the base's own default
        check_int("diffusion_steps (T)", options["diffusion_steps"], 1, " (the paper: 10)")
    check_int("denoiser_width", options["denoiser_width"], 1)
    check_int("denoiser_blocks", options["denoiser_blocks"], 0)
    check_number("denoiser_dropout", options["denoiser_dropout"], 0.0, 1.0, high_open=True)
    check_number("edit_dropout", options["edit_dropout"], 0.0, 1.0, high_open=True)
    check_int("action_chunk (h)", options["action_chunk"], 1, " (actions per decision; 1: one action at a time)")
    if not isinstance(options["mixed_precision"], bool):
        raise TypeError(f"mixed_precision must be True or False, got {options['mixed_precision']!r}")
