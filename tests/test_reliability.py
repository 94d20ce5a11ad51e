"""
Reliability catalogue (issue 24): every setting that passes validation trains, every bad one is refused at construction
with its name, a poisoned env step never enters the buffer, and a reload that cannot do what it was asked says so.
One table of cases (``CATALOGUE``), and a seeded fuzz test over the constructor's arguments.
"""

import math
import random
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC

from sb3_expo import EXPO
from sb3_expo.buffers import OfflineReplayBuffer
from sb3_expo.data import OfflineTransitions, RewardTransform


class ImageDict(gym.Env):
    """A Dict observation with a small image key (SB3's CNN failed on it with a kernel-size error)."""

    def __init__(self, size: int = 8):
        self.observation_space = gym.spaces.Dict(
            {"state": gym.spaces.Box(-1, 1, (3,)), "pixels": gym.spaces.Box(0, 255, (size, size, 3), np.uint8)}
        )
        self.action_space = gym.spaces.Box(-1, 1, (2,))

    def reset(self, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


class Poisoned(gym.Wrapper):
    """Pendulum with 20-step episodes whose last observation (``where="terminal"``) or reset is ``value`` while poisoned."""

    def __init__(self, where: str, value: float = np.nan):
        super().__init__(gym.make("Pendulum-v1", max_episode_steps=20))
        self.where, self.value, self.poisoned = where, value, True

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return (obs * self.value if self.poisoned and self.where == "reset" else obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.poisoned and self.where == "terminal" and (terminated or truncated):
            obs = obs * self.value
        return obs, reward, terminated, truncated, info


def pendulum_transitions(n: int = 64) -> OfflineTransitions:
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (n, 3))
    return OfflineTransitions(obs, rng.uniform(-2, 2, (n, 1)), rng.normal(size=n), obs, np.zeros(n))


# ------------------------------------------------------------------------ crashes on settings that passed validation


def refused(kwargs, overrides, error, match, env="Pendulum-v1", policy="MlpPolicy"):
    with pytest.raises(error, match=match) as caught:
        EXPO(policy, env, **{**kwargs, **overrides})
    return str(caught.value)


def case_n_edit_samples_zero(tmp_path, kwargs):
    message = refused(kwargs, {"n_edit_samples": 0}, ValueError, "n_edit_samples must be >= 1, got 0")
    assert "BasePolicyActor" in message  # what to use instead


def case_n_edit_samples_negative(tmp_path, kwargs):
    refused(kwargs, {"n_edit_samples": -1}, ValueError, "n_edit_samples must be >= 1, got -1")


def case_batch_size_zero(tmp_path, kwargs):
    refused(kwargs, {"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0")


def case_batch_size_negative(tmp_path, kwargs):
    refused(kwargs, {"batch_size": -16}, ValueError, "batch_size must be >= 1, got -16")


def case_diffusion_steps_not_an_int(tmp_path, kwargs):
    refused(kwargs, {"diffusion_steps": 2.5}, TypeError, r"diffusion_steps \(T\) must be an int, got 2.5")


def case_offline_ratio_nan(tmp_path, kwargs):
    message = refused(kwargs, {"offline_ratio": math.nan}, ValueError, r"offline_ratio must be a finite number in \[0, 1\]")
    assert "disagrees" not in message


def case_small_image_in_a_dict_observation(tmp_path, kwargs):
    overrides = {"buffer_size": 100, "policy_kwargs": {**kwargs["policy_kwargs"], "net_arch": [8]}}
    refused(kwargs, overrides, ValueError, "EXPO has no convolutional policy.*'pixels'", ImageDict(8), "MultiInputPolicy")


def case_load_a_sac_zip(tmp_path, kwargs):
    SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, policy_kwargs=dict(net_arch=[8]), device="cpu").save(tmp_path / "sac")
    with pytest.raises(ValueError, match=r"not saved by EXPO: its policy is stable_baselines3\.sac\.policies\.SACPolicy"):
        EXPO.load(tmp_path / "sac.zip", device="cpu")


# ------------------------------------------------------------------------------------------------ poisoned buffer


def poisoned_then_fixed(kwargs, where, value, match):
    """The poisoned step is refused with a message naming the env and the fix; with the env fixed, learning goes on."""
    env = Poisoned(where, value)
    model = EXPO("MlpPolicy", env, **kwargs)
    with pytest.raises(ValueError, match=match) as caught:
        model.learn(60)
    assert "Pendulum-v1" in str(caught.value) and "model.set_env(env)" in str(caught.value)
    size = model.replay_buffer.size()
    assert np.isfinite(model.replay_buffer.next_observations[:size]).all()
    assert np.isfinite(model.replay_buffer.observations[:size]).all()
    env.poisoned = False
    model.set_env(env)
    model.learn(60, reset_num_timesteps=False)
    size = model.replay_buffer.size()
    assert size >= 59 and np.isfinite(model.replay_buffer.next_observations[:size]).all()
    assert all(th.isfinite(parameter).all() for parameter in model.policy.parameters())


def case_nan_terminal_observation(tmp_path, kwargs):
    poisoned_then_fixed(kwargs, "terminal", np.nan, r"non-finite observation \(the last one of an episode of env 0")


def case_inf_terminal_observation(tmp_path, kwargs):
    poisoned_then_fixed(kwargs, "terminal", np.inf, r"terminal_observation.*at env step 20")


def case_nan_reset_observation(tmp_path, kwargs):
    poisoned_then_fixed(kwargs, "reset", np.nan, r"non-finite observation \(the reset observation")


# ------------------------------------------------------------------------------------------------- silent reloads


def saved_model(tmp_path, kwargs, **overrides):
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**kwargs, **overrides})
    model.learn(30)
    model.save(tmp_path / "model")
    model.save_replay_buffer(tmp_path / "buffer")
    return tmp_path / "model.zip"


def network_option_refused(name, value):
    def case(tmp_path, kwargs):
        path = saved_model(tmp_path, kwargs)
        with pytest.raises(ValueError, match=f"EXPO.load cannot change {name}"):
            EXPO.load(path, device="cpu", **{name: value})
        EXPO.load(path, device="cpu", **{name: kwargs.get(name, 0.7)})  # the saved value (edit_scale: its default): fine

    return case


def case_load_applies_acting_options(tmp_path, kwargs):
    model = EXPO.load(saved_model(tmp_path, kwargs), device="cpu", n_edit_samples=1, critic_subset_size=1)
    assert model.n_edit_samples == model.policy.n_edit_samples == 1 and model.critic_subset_size == 1
    assert model.predict(np.zeros(3, dtype=np.float32))[0].shape == (1,)
    with pytest.raises(ValueError, match="n_edit_samples must be >= 1"):
        EXPO.load(tmp_path / "model.zip", device="cpu", n_edit_samples=0)


def case_load_with_another_reward_scale(tmp_path, kwargs):
    path = saved_model(tmp_path, kwargs, reward_scale=10.0)
    model = EXPO.load(path, device="cpu", reward_scale=1.0)
    assert model.reward_scale == 1.0 and model.replay_buffer.reward_transform == RewardTransform(1.0, 0.0)
    with pytest.warns(UserWarning, match="the model's are used"):
        model.load_replay_buffer(tmp_path / "buffer.pkl")  # saved with scale 10
    assert model.replay_buffer.reward_transform == RewardTransform(1.0, 0.0)


def case_load_adds_a_reward_scale(tmp_path, kwargs):
    model = EXPO.load(saved_model(tmp_path, kwargs), device="cpu", reward_scale=10.0)  # saved with SB3's plain buffer
    assert isinstance(model.replay_buffer, OfflineReplayBuffer)
    assert model.replay_buffer.reward_transform == RewardTransform(10.0, 0.0)


def case_replay_buffer_without_the_models_transform(tmp_path, kwargs):
    saved_model(tmp_path, kwargs)  # a plain SB3 buffer, no transform
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**kwargs, "reward_scale": 10.0})
    change = r"reward_transform RewardTransform\(scale=1.0, shift=0.0\) -> RewardTransform\(scale=10.0"
    with pytest.warns(UserWarning, match=change):
        model.load_replay_buffer(tmp_path / "buffer.pkl")
    buffer = model.replay_buffer
    assert isinstance(buffer, OfflineReplayBuffer) and buffer.reward_transform == RewardTransform(10.0, 0.0)
    assert buffer.size() == 30 and th.isfinite(buffer.sample(8).rewards).all()


def case_in_memory_offline_data_is_not_saved(tmp_path, kwargs):
    transitions = pendulum_transitions()
    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=transitions, **kwargs)
    with pytest.warns(UserWarning, match="in-memory OfflineTransitions, which save\\(\\) does not store"):
        model.save(tmp_path / "model")
    with pytest.warns(UserWarning, match="attach it again"):
        loaded = EXPO.load(tmp_path / "model.zip", device="cpu")
    assert loaded.replay_buffer.offline_size == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = EXPO.load(tmp_path / "model.zip", device="cpu", offline_dataset=transitions)
    assert again.replay_buffer.offline_size == len(transitions)


def case_minari_dataset_of_another_env(tmp_path, kwargs):
    """Same spaces, another task: accepted before without a word."""
    from tests.test_data import create_minari_dataset

    if "test/SwingUp-v0" not in gym.registry:
        gym.register("test/SwingUp-v0", entry_point="gymnasium.envs.classic_control:PendulumEnv", max_episode_steps=7)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
        pendulum = gym.make("Pendulum-v1", max_episode_steps=7)
        create_minari_dataset("test/pendulum/random-v0", pendulum, n_episodes=3, record_env_spec=True)
        with pytest.warns(UserWarning, match="recorded on 'Pendulum-v1', but this model's env is 'test/SwingUp-v0'"):
            EXPO("MlpPolicy", "test/SwingUp-v0", offline_dataset="test/pendulum/random-v0", **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            EXPO("MlpPolicy", "Pendulum-v1", offline_dataset="test/pendulum/random-v0", **kwargs)


NETWORK_CHANGES = [("n_critics", 4), ("edit_scale", 0.2), ("diffusion_steps", 6), ("n_base_samples", 5)]
CATALOGUE = {
    "n_edit_samples=0": case_n_edit_samples_zero,
    "n_edit_samples<0": case_n_edit_samples_negative,
    "batch_size=0": case_batch_size_zero,
    "batch_size<0": case_batch_size_negative,
    "diffusion_steps=2.5": case_diffusion_steps_not_an_int,
    "offline_ratio=nan": case_offline_ratio_nan,
    "small image in a Dict": case_small_image_in_a_dict_observation,
    "EXPO.load of a SAC zip": case_load_a_sac_zip,
    "NaN terminal observation": case_nan_terminal_observation,
    "inf terminal observation": case_inf_terminal_observation,
    "NaN reset observation": case_nan_reset_observation,
    **{f"load {name}=": network_option_refused(name, value) for name, value in NETWORK_CHANGES},
    "load n_edit_samples=": case_load_applies_acting_options,
    "load reward_scale= (other)": case_load_with_another_reward_scale,
    "load reward_scale= (new)": case_load_adds_a_reward_scale,
    "load_replay_buffer, transform differs": case_replay_buffer_without_the_models_transform,
    "in-memory OfflineTransitions": case_in_memory_offline_data_is_not_saved,
    "Minari dataset of another env": case_minari_dataset_of_another_env,
}


@pytest.mark.parametrize("case", CATALOGUE.values(), ids=CATALOGUE.keys())
def test_catalogue(case, tmp_path, tiny_kwargs):
    case(tmp_path, {**tiny_kwargs, "learning_starts": 10})


# ------------------------------------------------------------------------------------------------------------ fuzz

NAN, INF = math.nan, math.inf
# Legal and illegal values of each constructor argument (a trial draws a few arguments, the rest stay tiny).
FUZZ_VALUES = {
    "batch_size": [1, 2, 16, 0, -1, 2.0, "16", None],
    "buffer_size": [1, 100, 0, -5, 1.5],
    "learning_starts": [0, 5, -1, 2.5],
    "tau": [0.0, 0.005, 1.0, -0.1, 1.5, NAN, INF, "0.1"],
    "gamma": [0.0, 0.99, 1.0, 1.01, NAN, -1],
    "gradient_steps": [1, 2, -1, 0, -2, 1.5],
    "policy_delay": [1, 2, 3, 0, -1, 2.0],
    "offline_ratio": [0.0, 0.5, 1.0, NAN, -0.1, 2],
    "reward_scale": [1.0, 0.0, -2.0, 100.0, NAN, INF],
    "reward_shift": [0.0, -1.0, NAN, -INF],
    "n_critics": [1, 2, 3, 0, -1, 2.0],
    "critic_subset_size": [1, 2, 3, 0, 5],
    "n_base_samples": [1, 3, 0, 2.0],
    "n_edit_samples": [1, 2, 0, -1, 5, 1.0],
    "edit_scale": [0.05, 0.7, 1.0, 0.0, -0.1, NAN, INF],
    "diffusion_steps": [1, 4, 0, 2.5, -3],
    "base_ema_rate": [0.001, 1.0, 0.0, 1.5, NAN],
    "policy_lr_decay_steps": [None, 1, 100, 0, -5, 2.5],
    "ent_coef": ["auto", "auto_0.1", 0.0, 0.2, "auto_0", "auto_x", -1.0, NAN, "fixed"],
    "target_entropy": ["auto", -1.0, 0.0, NAN, "x"],
    "learning_rate": [3e-4, 1e-3, 0.0, -1e-3, NAN, INF],
    "train_freq": [1, 2, (1, "episode"), 0, -1],
    "base_imitates": ["all", "offline_and_successes", "none"],
    "stats_window_size": [1, 100, 0],
}
FUZZ_TRIALS = 80


def fuzz_trial(rng: random.Random, tiny_kwargs: dict) -> tuple[dict, str]:
    """One trial: a clear ValueError/TypeError at construction, or 40 env steps of learning with finite parameters."""
    overrides = {name: rng.choice(FUZZ_VALUES[name]) for name in rng.sample(sorted(FUZZ_VALUES), rng.randint(1, 4))}
    kwargs = {**tiny_kwargs, "learning_starts": 10, **overrides}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # edit_scale > 1, batch sizes: warnings, not failures
            model = EXPO("MlpPolicy", gym.make("Pendulum-v1", max_episode_steps=15), **kwargs)
    except (ValueError, TypeError) as error:
        assert str(error), overrides
        return overrides, "refused"
    model.learn(40)
    assert all(th.isfinite(parameter).all() for parameter in model.policy.parameters()), overrides
    return overrides, "trained"


def test_fuzz_constructor_arguments(tiny_kwargs):
    """Seeded: every trial is refused clearly at construction or learns finitely (no other outcome, no crash later)."""
    rng = random.Random(24)
    outcomes = [fuzz_trial(rng, tiny_kwargs) for _ in range(FUZZ_TRIALS)]
    kinds = [outcome for _, outcome in outcomes]
    assert kinds.count("refused") >= 5 and kinds.count("trained") >= 5, outcomes  # both sides are exercised
