"""
``EXPO.load`` and ``load_replay_buffer`` that refuse or warn instead of silently doing something else.

SB3's ``load`` writes its keyword arguments over the model's attributes, so an option that only lives in the policy
(``n_critics``) was ignored, a reward transform was reported by the model but not used by its buffer, and a zip of
another algorithm failed deep inside the set-up. :class:`ReloadChecks` (a mixin of :class:`~sb3_expo.EXPO`, before
the SB3 class) checks the zip first and reconciles the arguments with what was saved.
"""

import io
import pathlib
import warnings
import zipfile
from typing import Any

from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.save_util import json_to_data, open_path

from sb3_expo.buffers import OfflineMixingMixin
from sb3_expo.data import OfflineTransitions, RewardTransform
from sb3_expo.policies import ExpoPolicy
from sb3_expo.validation import check_policy_options

Path = str | pathlib.Path | io.BufferedIOBase

# Options that shape (or scale) the saved networks: a load cannot change them.
NETWORK_OPTIONS = ("n_critics", "n_base_samples", "edit_scale", "diffusion_steps", "action_chunk")
# Options of the on-the-fly action only: a load applies them to the loaded policy.
ACTING_OPTIONS = ("n_edit_samples", "critic_subset_size", "mixed_precision")
# Options that live in the replay buffer too (replay_buffer_kwargs): a load passes them on to the new buffer.
BUFFER_OPTIONS = ("reward_scale", "reward_shift", "offline_ratio")

OFFLINE_DATA_NOT_SAVED = (
    "This model's offline data is an in-memory OfflineTransitions, which save() does not store (only a Minari id or a "
    "file path is saved with the model). After EXPO.load, attach it again: EXPO.load(path, offline_dataset=transitions) "
    "or model.attach_offline_data(transitions); without it the model trains on online data only."
)


def read_saved_data(path: Path, custom_objects: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``data`` entry of an SB3 zip (constructor arguments and counters), without reading the weights."""
    if isinstance(path, io.BufferedIOBase):
        start = path.tell()
        with zipfile.ZipFile(path) as archive:
            text = archive.read("data").decode()
        path.seek(start)
    else:
        with open_path(path, "r", verbose=0, suffix="zip") as file, zipfile.ZipFile(file) as archive:
            text = archive.read("data").decode()
    return json_to_data(text, custom_objects)


def check_saved_by_expo(algorithm: type, data: dict[str, Any], path: Path) -> None:
    """Refuse a zip whose policy is not an ExpoPolicy (a SAC zip failed with ``'SACPolicy' has no attribute 'base'``)."""
    policy_class = data.get("policy_class")
    if isinstance(policy_class, type) and issubclass(policy_class, ExpoPolicy):
        return
    if isinstance(policy_class, type):
        name = f"{policy_class.__module__}.{policy_class.__qualname__}"
    else:
        name = (
            str(policy_class.get("__module__", "an unknown class")) if isinstance(policy_class, dict) else repr(policy_class)
        )
    raise ValueError(
        f"{path} was not saved by {algorithm.__name__}: its policy is {name}, not an ExpoPolicy. Load it with the "
        f"algorithm that saved it (SAC.load for a SACPolicy, ...); {algorithm.__name__} cannot continue another "
        "algorithm's networks."
    )


def check_network_options(data: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """Refuse a load-time value of an option that shapes the saved networks (it was silently ignored)."""
    saved = data.get("policy_kwargs", {})
    for name in NETWORK_OPTIONS:
        if name in kwargs and kwargs[name] != saved.get(name):
            raise ValueError(
                f"EXPO.load cannot change {name} (saved: {saved.get(name)!r}, given: {kwargs[name]!r}): it shapes the "
                f"saved networks. Load without {name}=..., or train a new model with EXPO(..., {name}={kwargs[name]!r})."
            )


def buffer_load_kwargs(data: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """
    ``replay_buffer_kwargs`` (and class) for a load that changes ``reward_scale`` / ``reward_shift`` /
    ``offline_ratio``: the saved kwargs held the old values, which EXPO's set-up kept for the buffer while the
    model reported the new ones.
    """
    given = [name for name in BUFFER_OPTIONS if name in kwargs]
    if not given or "replay_buffer_kwargs" in kwargs:
        return {}
    buffer_kwargs = dict(data.get("replay_buffer_kwargs") or {})
    if "offline_ratio" in kwargs:
        buffer_kwargs["offline_ratio"] = kwargs["offline_ratio"]
    if "reward_scale" in kwargs or "reward_shift" in kwargs:
        scale = kwargs.get("reward_scale", data.get("reward_scale", 1.0))
        buffer_kwargs["reward_transform"] = RewardTransform(scale, kwargs.get("reward_shift", data.get("reward_shift", 0.0)))
    update: dict[str, Any] = {"replay_buffer_kwargs": buffer_kwargs}
    if data.get("replay_buffer_class") in (ReplayBuffer, DictReplayBuffer):  # SB3's pick when nothing needed mixing
        update["replay_buffer_class"] = None  # EXPO picks again, an offline-mixing buffer if the transform needs one
        buffer_kwargs.pop("offline_ratio", None)
    return update


def apply_acting_options(model: Any, options: dict[str, Any]) -> None:
    """Set options of the on-the-fly action on a loaded model (they are read from the policy and ``policy_kwargs``)."""
    if not options:
        return
    check_policy_options({**model.policy_kwargs, **options, **_policy_defaults(model.policy)})
    for name, value in options.items():
        model.policy_kwargs[name] = value
        setattr(model.policy, name, value)
    if "mixed_precision" in options:
        model.policy.base.mixed_precision = model.policy.base_ema.mixed_precision = options["mixed_precision"]


def _policy_defaults(policy: ExpoPolicy) -> dict[str, Any]:
    """The policy's values of the options that ``policy_kwargs`` may leave out."""
    names = ("denoiser_width", "denoiser_blocks", "denoiser_dropout", "edit_dropout")
    return {name: getattr(policy, name) for name in names}


def adopt_buffer(loaded: ReplayBuffer, like: OfflineMixingMixin) -> OfflineMixingMixin:
    """
    A plain SB3 buffer (saved by a model without offline data or reward transform) as an offline-mixing buffer of
    ``like``'s class and settings, with the same online data: SB3's ``load_replay_buffer`` put it in place as it was,
    so the model's reward transform and offline mixing silently stopped.
    """
    if not isinstance(like, type(loaded)):
        raise ValueError(
            f"The replay buffer file holds a {type(loaded).__name__}, which this model's {type(like).__name__} cannot "
            "take over (Box vs Dict observations?)"
        )
    adopted = type(like).__new__(type(like))
    state = {**loaded.__dict__, "offline_ratio": like.offline_ratio, "reward_transform": RewardTransform()}
    adopted.__setstate__({**state, "_offline": None})  # saved without a transform: _keep_buffer_settings warns
    return adopted


def chunk_settings(buffer: Any) -> tuple[int, float | None]:
    """What a buffer's samples are: chunks of ``action_chunk`` steps, discounted by ``gamma`` (one step: no discount)."""
    horizon = getattr(buffer, "action_chunk", 1)
    return horizon, getattr(buffer, "gamma", None) if horizon > 1 else None


def check_chunk_settings_kept(model: Any, before: ReplayBuffer, path: Path) -> None:
    """Refuse a buffer file that samples other chunks than the model learns on, keeping the model's buffer."""
    if chunk_settings(model.replay_buffer) != chunk_settings(before):
        loaded, model.replay_buffer = model.replay_buffer, before
        raise ValueError(
            f"The replay buffer {path} samples (action_chunk, gamma) = {chunk_settings(loaded)} and this model learns on "
            f"{chunk_settings(before)}: its buffer was kept. Load it into a model with the file's action_chunk and gamma."
        )


class ReloadChecks:
    """``load``, ``save`` and ``load_replay_buffer`` that name what they cannot keep, and how to fix it; what is saved."""

    offline_dataset: Any
    replay_buffer: Any
    ent_coef_optimizer: Any
    _offline_transitions: OfflineTransitions | None

    @classmethod
    def load(cls, path: Path, env: Any = None, device: Any = "auto", custom_objects: dict[str, Any] | None = None,
             print_system_info: bool = False, force_reset: bool = True, **kwargs: Any) -> Any:  # fmt: skip
        """
        SB3's ``load``, after checks of the zip and of the arguments: a zip of another algorithm, or a load-time
        ``n_critics`` / ``n_base_samples`` / ``edit_scale`` / ``diffusion_steps`` that differs from the saved one,
        is an error; ``n_edit_samples`` / ``critic_subset_size`` / ``mixed_precision`` are applied to the loaded
        policy; ``reward_scale`` / ``reward_shift`` / ``offline_ratio`` reach the new replay buffer too. Warns when
        the model's in-memory offline data (not saved) has to be attached again.
        """
        data = read_saved_data(path, custom_objects)
        check_saved_by_expo(cls, data, path)
        check_network_options(data, kwargs)
        acting = {name: kwargs.pop(name) for name in ACTING_OPTIONS if name in kwargs}
        kwargs.update(buffer_load_kwargs(data, kwargs))
        model = super().load(  # type: ignore[misc]
            path, env, device, custom_objects, print_system_info, force_reset, **kwargs
        )
        apply_acting_options(model, acting)
        if data.get("_offline_data_not_saved") and model.offline_dataset is None:
            warnings.warn(OFFLINE_DATA_NOT_SAVED, stacklevel=2)
        return model

    def save(self, path: Path, exclude: Any = None, include: Any = None) -> None:
        """SB3's ``save``; warns that in-memory offline data is not saved (and marks it in the zip for ``load``)."""
        self._offline_data_not_saved = isinstance(self.offline_dataset, OfflineTransitions)
        if self._offline_data_not_saved:
            warnings.warn(OFFLINE_DATA_NOT_SAVED, stacklevel=2)
        super().save(path, exclude, include)  # type: ignore[misc]

    def _excluded_save_params(self) -> list[str]:
        """SB3's, and what is rebuilt at set-up or never saved: the networks' aliases, the graphs, the offline data."""
        excluded = [*super()._excluded_save_params(), "base", "base_ema", "edit_actor", "critic", "critic_target"]  # type: ignore[misc]
        excluded += ["_offline_transitions", "resolved_compile_mode", "_run_opened_by_pretrain", "steps"]
        if isinstance(self.offline_dataset, OfflineTransitions):
            excluded.append("offline_dataset")
        return excluded

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        """The policy and every optimiser's state dict; the temperature (learned: log α, else the fixed α)."""
        state_dicts = ["policy", "base.optimizer", "edit_actor.optimizer", "critic.optimizer"]
        if self.ent_coef_optimizer is not None:
            return [*state_dicts, "ent_coef_optimizer"], ["log_ent_coef"]
        return state_dicts, ["ent_coef_tensor"]

    def load_replay_buffer(self, path: Path, truncate_last_traj: bool = True) -> None:
        """
        SB3's ``load_replay_buffer``, keeping this model's reward transform and offline ratio: the file's own are
        replaced, with a warning that says which was used, and a plain buffer becomes this model's mixing buffer.
        """
        before = self.replay_buffer
        super().load_replay_buffer(path, truncate_last_traj)  # type: ignore[misc]
        check_chunk_settings_kept(self, before, path)
        if not isinstance(before, OfflineMixingMixin):
            return
        loaded = self.replay_buffer
        if not isinstance(loaded, OfflineMixingMixin):
            loaded = self.replay_buffer = adopt_buffer(loaded, before)
            if self._offline_transitions is not None:
                loaded.attach_offline(self._offline_transitions)
        _keep_buffer_settings(loaded, before, path)


def _keep_buffer_settings(loaded: OfflineMixingMixin, before: OfflineMixingMixin, path: Path) -> None:
    """Give the loaded buffer the model's reward transform and offline ratio, warning where the file's differed."""
    changes = [
        f"{name} {getattr(loaded, name)!r} -> {getattr(before, name)!r}"
        for name in ("reward_transform", "offline_ratio")
        if getattr(loaded, name) != getattr(before, name)
    ]
    loaded.reward_transform, loaded.offline_ratio = before.reward_transform, before.offline_ratio
    if changes:
        warnings.warn(
            f"The replay buffer {path} was saved with other settings than this model's; the model's are used "
            f"({', '.join(changes)}). To train with the file's, load the model with them: EXPO.load(path, "
            "reward_scale=..., reward_shift=..., offline_ratio=...).",
            stacklevel=3,
        )
