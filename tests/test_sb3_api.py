"""EXPO behaves like an SB3 algorithm: learn, predict, save/load, buffers, VecEnvs, seeding, logging."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import BitFlippingEnv
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_expo import EXPO, ExpoPolicy, MultiInputPolicy


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(th.equal(a[k], b[k]) for k in a)


def test_learn_on_pendulum_with_progress_bar_and_callbacks(tiny_kwargs, tmp_path):
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    eval_env = gym.make("Pendulum-v1")
    callbacks = [
        CheckpointCallback(save_freq=100, save_path=str(tmp_path / "checkpoints"), name_prefix="expo"),
        EvalCallback(eval_env, eval_freq=100, n_eval_episodes=1, log_path=str(tmp_path / "eval")),
    ]
    model.learn(250, callback=callbacks, progress_bar=True)
    assert model.num_timesteps == 250
    assert model._n_updates == 2 * (250 - 50)
    assert (tmp_path / "checkpoints" / "expo_200_steps.zip").exists()
    assert (tmp_path / "eval" / "evaluations.npz").exists()


def test_learn_on_dict_observations(tiny_kwargs):
    env = BitFlippingEnv(n_bits=4, continuous=True, max_steps=8)
    model = EXPO("MultiInputPolicy", env, **tiny_kwargs)
    assert isinstance(model.policy, MultiInputPolicy)
    model.learn(120)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs)
    assert action.shape == (4,) and env.action_space.contains(action)


def test_mlp_policy_on_dict_observations_points_to_multi_input(tiny_kwargs):
    with pytest.raises(ValueError, match="MultiInputPolicy"):
        EXPO("MlpPolicy", BitFlippingEnv(n_bits=4, continuous=True), **tiny_kwargs)


def test_predict_returns_actions_in_env_bounds_for_single_and_batched_observations(tiny_kwargs):
    env = gym.make("MountainCarContinuous-v0")  # bounds [-1, 1]
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs)  # bounds [-2, 2]
    obs = np.array([[1.0, 0.0, 0.5]] * 64, dtype=np.float32)
    for deterministic in (False, True):
        actions, state = model.predict(obs, deterministic=deterministic)
        assert actions.shape == (64, 1) and state is None
        assert np.all(np.abs(actions) <= 2.0)
    single, _ = model.predict(obs[0])
    assert single.shape == (1,)
    # The policy acts in [-1, 1]; predict rescales to the env's bounds, as SB3 does for SAC.
    th.manual_seed(0)
    scaled = model.policy(th.as_tensor(obs))
    assert scaled.abs().max() <= 1.0
    del env


def test_evaluate_policy_runs(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    mean_return, _ = evaluate_policy(model, gym.make("Pendulum-v1"), n_eval_episodes=1)
    assert np.isfinite(mean_return)


def test_save_load_round_trip(tiny_kwargs, tmp_path):
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs, seed=0)
    model.learn(120)
    model.save(tmp_path / "expo.zip")
    loaded = EXPO.load(tmp_path / "expo.zip", env=gym.make("Pendulum-v1"), device="cpu")

    assert states_equal(model.policy.state_dict(), loaded.policy.state_dict())  # all nets, EMA and targets
    for name in ("base", "edit_actor", "critic"):
        saved = getattr(model, name).optimizer.state_dict()
        restored = getattr(loaded, name).optimizer.state_dict()
        assert saved["param_groups"] == restored["param_groups"]
        for key, state in saved["state"].items():
            assert states_equal(state, restored["state"][key])
    assert th.equal(model.log_ent_coef, loaded.log_ent_coef)
    assert loaded.target_entropy == model.target_entropy
    assert (loaded.n_critics, loaded.edit_scale, loaded.policy_delay) == (
        model.n_critics,
        model.edit_scale,
        model.policy_delay,
    )
    assert loaded._n_policy_updates == model._n_policy_updates

    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    for deterministic in (False, True):
        th.manual_seed(42)
        expected, _ = model.predict(obs, deterministic=deterministic)
        th.manual_seed(42)
        actual, _ = loaded.predict(obs, deterministic=deterministic)
        np.testing.assert_array_equal(actual, expected)
    loaded.learn(60, reset_num_timesteps=False)  # and it keeps learning


def test_policy_save_load(tiny_kwargs, tmp_path):
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    model.policy.save(tmp_path / "policy.pth")
    policy = ExpoPolicy.load(tmp_path / "policy.pth")
    assert states_equal(model.policy.state_dict(), policy.state_dict())


def test_fixed_ent_coef_save_load(tiny_kwargs, tmp_path):
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs, ent_coef=0.05)
    model.learn(80)
    model.save(tmp_path / "expo.zip")
    loaded = EXPO.load(tmp_path / "expo.zip", device="cpu")
    assert loaded.ent_coef_optimizer is None and loaded.ent_coef_tensor.item() == pytest.approx(0.05)


def test_replay_buffer_save_load(tiny_kwargs, tmp_path):
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    model.learn(100)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    other = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    other.load_replay_buffer(tmp_path / "buffer.pkl")
    assert other.replay_buffer.size() == model.replay_buffer.size() == 100
    np.testing.assert_array_equal(other.replay_buffer.observations, model.replay_buffer.observations)
    np.testing.assert_array_equal(other.replay_buffer.actions, model.replay_buffer.actions)


def test_multiple_envs(tiny_kwargs):
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = EXPO("MlpPolicy", env, **tiny_kwargs)
    model.learn(160)
    assert model.num_timesteps == 160
    assert model.replay_buffer.size() == 80 and model.replay_buffer.n_envs == 2
    actions, _ = model.predict(env.reset())
    assert actions.shape == (2, 1)


def test_set_env(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    model.learn(60)
    model.set_env(make_vec_env("Pendulum-v1", n_envs=1))
    model.learn(60, reset_num_timesteps=False)
    assert model.num_timesteps == 120


def test_same_seed_gives_identical_parameters(tiny_kwargs):
    def run(seed):
        model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs, seed=seed)
        model.learn(120)
        return model.policy.state_dict()

    first, second, other = run(3), run(3), run(4)
    assert states_equal(first, second)
    assert not states_equal(first, other)


def test_tensorboard_logs_sb3_and_expo_keys(tiny_kwargs, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs, tensorboard_log=str(tmp_path))
    model.learn(450, log_interval=1)
    run_dir = tmp_path / "EXPO_1"
    assert run_dir.is_dir()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    keys = set(events.Tags()["scalars"])
    expected = {
        "rollout/ep_rew_mean",
        "time/fps",
        "train/critic_loss",
        "train/actor_loss",
        "train/base_loss",
        "train/ent_coef",
        "train/edit_size",
        "train/edit_win_rate",
        "train/q_ensemble_std",
        "train/entropy",
        "train/learning_rate",
    }
    assert expected <= keys, expected - keys
    win_rates = [e.value for e in events.Scalars("train/edit_win_rate")]
    assert all(0.0 <= v <= 1.0 for v in win_rates)


def test_device_auto_is_cpu_without_cuda(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "device": "auto"})
    expected = "cuda" if th.cuda.is_available() else "cpu"
    assert model.device.type == expected
    assert all(p.device.type == expected for p in model.policy.parameters())


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs CUDA")
def test_learn_on_cuda(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "device": "cuda"})
    model.learn(100)
    assert model.log_ent_coef.device.type == "cuda"


class ShiftedBoundsPendulum(gym.ActionWrapper):
    """Pendulum with asymmetric action bounds [0, 4] mapped to its torque [-2, 2]."""

    def __init__(self):
        super().__init__(gym.make("Pendulum-v1"))
        self.action_space = gym.spaces.Box(0.0, 4.0, (1,), np.float32)

    def action(self, action):
        return action - 2.0


def test_policy_smoke_on_asymmetric_bounds(tiny_kwargs):
    """check_env-style: the env is valid, and a trained policy's actions always lie in its (asymmetric) bounds."""
    from stable_baselines3.common.env_checker import check_env

    env = ShiftedBoundsPendulum()
    check_env(env, warn=False)
    model = EXPO("MlpPolicy", env, **tiny_kwargs)
    model.learn(120)
    stored = model.replay_buffer.actions[: model.replay_buffer.size()]
    assert np.all(np.abs(stored) <= 1.0)  # the buffer holds actions scaled to [-1, 1]
    obs, _ = env.reset(seed=0)
    for deterministic in (False, True):
        for _ in range(50):
            action, _ = model.predict(obs, deterministic=deterministic)
            assert env.action_space.contains(action), action
            obs, *_ = env.step(action)


def test_policy_options_given_the_sb3_way_in_policy_kwargs(tiny_kwargs):
    """``policy_kwargs=dict(n_critics=5)`` is how SB3 users size SAC's critics: EXPO takes it, and refuses a clash."""
    kwargs = {key: value for key, value in tiny_kwargs.items() if key not in ("n_critics", "edit_scale")}
    policy_kwargs = {**kwargs.pop("policy_kwargs", {}), "n_critics": 5, "edit_scale": 0.3}
    model = EXPO("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs, **kwargs)
    assert model.n_critics == 5 and model.policy.critic.n_critics == 5 and model.edit_scale == 0.3
    assert EXPO("MlpPolicy", "Pendulum-v1", **kwargs).n_critics == 10  # ExpoPolicy's default, written once
    with pytest.raises(ValueError, match="n_critics"):
        EXPO("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs, **{**kwargs, "n_critics": 4})
