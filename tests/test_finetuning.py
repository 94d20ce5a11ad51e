"""The stable fine-tuning recipe: what the base imitates online, pretraining's defaults, the paper's switch."""

import math
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import configure

from sb3_expo import EXPO
from sb3_expo.buffers import DictOfflineReplayBuffer, OfflineReplayBuffer
from sb3_expo.data import OfflineTransitions
from sb3_expo.evaluation import ForgettingMonitor

OBS_SPACE = spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACTIONS = spaces.Box(-1.0, 1.0, (1,), np.float32)
OFFLINE_ACTION, FAILED_ACTION, SUCCESS_ACTION = -0.5, 0.25, 0.75


def offline_data(n: int = 40, action_bound: float = 1.0) -> OfflineTransitions:
    """``n`` offline rows whose observations are ``1000 + i`` and actions all ``OFFLINE_ACTION`` once scaled to [-1, 1]."""
    obs = np.repeat(1000.0 + np.arange(n, dtype=np.float32)[:, None], 3, axis=1)
    return OfflineTransitions(obs, np.full((n, 1), OFFLINE_ACTION * action_bound), np.zeros(n), obs + 0.5, np.zeros(n))


def add_episode(buffer, length: int, success: bool | None, env_index: int = 0, start: float = 0.0) -> None:
    """One episode in env ``env_index`` (the others keep stepping mid-episode); ``None``: no is_success key at all."""
    action_value = SUCCESS_ACTION if success else FAILED_ACTION
    for step in range(length):
        obs = np.full((buffer.n_envs, 3), -(start + step + 1.0), np.float32)
        done = np.zeros(buffer.n_envs)
        infos = [{} for _ in range(buffer.n_envs)]
        if step == length - 1:
            done[env_index] = 1.0
            if success is not None:
                infos[env_index]["is_success"] = success
        actions = np.full((buffer.n_envs, 1), action_value, np.float32)
        buffer.add(obs, obs - 0.5, actions, np.zeros(buffer.n_envs), done, infos)


def make_buffer(size: int = 100, n_envs: int = 1, offline_rows: int = 40) -> OfflineReplayBuffer:
    buffer = OfflineReplayBuffer(size, OBS_SPACE, ACTIONS, device="cpu", n_envs=n_envs)
    if offline_rows:
        buffer.attach_offline(offline_data(offline_rows))
    return buffer


# ------------------------------------------------------------------------------------------- successful episodes


def test_rows_of_successful_episodes_are_marked():
    buffer = make_buffer()
    add_episode(buffer, 5, success=False)
    add_episode(buffer, 3, success=True)
    add_episode(buffer, 4, success=None)  # an env that never reports success: nothing marked
    add_episode(buffer, 2, success=True)
    assert buffer.successful[:14, 0].tolist() == [False] * 5 + [True] * 3 + [False] * 4 + [True] * 2
    assert buffer.n_successful == 5


def test_marks_follow_the_ring_buffer_and_episodes_longer_than_it():
    buffer = make_buffer(size=10)
    add_episode(buffer, 6, success=True)
    add_episode(buffer, 6, success=False)  # overwrites rows 0-1 of the successful episode
    assert buffer.successful[:, 0].tolist() == [False, False, True, True, True, True, False, False, False, False]
    add_episode(buffer, 25, success=True)  # longer than the buffer: every row is this episode's
    assert buffer.successful.all()


def test_each_env_keeps_its_own_episodes():
    buffer = make_buffer(n_envs=2)
    add_episode(buffer, 4, success=True, env_index=1)  # env 0 is mid-episode all along
    add_episode(buffer, 2, success=False, env_index=0)
    assert buffer.successful[:6, 1].tolist() == [True] * 4 + [False] * 2
    assert not buffer.successful[:, 0].any()
    assert buffer._episode_lengths.tolist() == [0, 2]


def test_imitation_rows_come_from_offline_data_and_successful_episodes_only():
    buffer = make_buffer(offline_rows=40)
    add_episode(buffer, 30, success=False)
    add_episode(buffer, 40, success=True)
    np.random.seed(0)
    obs, actions, online_share = buffer.sample_imitation(4000)
    assert set(np.unique(actions.numpy()).round(4)) == {OFFLINE_ACTION, SUCCESS_ACTION}
    is_online = obs[:, 0] < 0
    th.testing.assert_close(actions[is_online], th.full_like(actions[is_online], SUCCESS_ACTION))
    th.testing.assert_close(actions[~is_online], th.full_like(actions[~is_online], OFFLINE_ACTION))
    assert online_share == pytest.approx(is_online.float().mean().item())
    assert online_share == pytest.approx(40 / 80, abs=0.03)  # uniform over the union of both


def test_imitation_rows_with_dict_observations():
    space = spaces.Dict({"pos": OBS_SPACE, "goal": spaces.Box(-1.0, 1.0, (2,), np.float32)})
    buffer = DictOfflineReplayBuffer(50, space, ACTIONS, device="cpu")
    goal = np.zeros((4, 2), np.float32)
    data = offline_data(4)
    buffer.attach_offline(
        OfflineTransitions(
            {"pos": data.observations, "goal": goal}, data.actions, data.rewards,
            {"pos": data.next_observations, "goal": goal}, data.terminals,
        )
    )  # fmt: skip
    for step in range(3):
        obs = {"pos": np.full((1, 3), -(step + 1.0), np.float32), "goal": np.ones((1, 2), np.float32)}
        buffer.add(obs, obs, np.full((1, 1), SUCCESS_ACTION), np.zeros(1), np.array([step == 2]), [{"is_success": True}])
    obs, _, _ = buffer.sample_imitation(64)
    assert set(obs) == {"pos", "goal"} and obs["pos"].shape == (64, 3) and obs["goal"].shape == (64, 2)
    online = obs["pos"][:, 0] < 0
    assert online.any() and (~online).any()
    assert (obs["goal"][online] == 1).all() and (obs["goal"][~online] == 0).all()


def test_nothing_to_imitate_is_a_clear_error():
    buffer = make_buffer(offline_rows=0)
    add_episode(buffer, 5, success=False)
    with pytest.raises(ValueError, match="Nothing to imitate"):
        buffer.sample_imitation(8)


def test_buffers_pickled_before_the_tracking_load_with_nothing_marked():
    buffer = make_buffer()
    add_episode(buffer, 3, success=True)
    state = buffer.__getstate__()
    del state["successful"], state["_episode_lengths"]
    old = OfflineReplayBuffer.__new__(OfflineReplayBuffer)
    old.__setstate__(state)
    assert old.n_successful == 0 and old.successful.shape == (100, 1)
    assert pickle.loads(pickle.dumps(buffer)).n_successful == 3


# ------------------------------------------------------------------------------------------- EXPO


@pytest.fixture
def imitated(monkeypatch):
    """Records the actions of every base step (the base's imitation rows)."""
    seen = []

    def spy(model):
        base_step = model._base_step

        def recording(obs, actions):
            seen.append(actions.detach().clone())
            return base_step(obs, actions)

        monkeypatch.setattr(model, "_base_step", recording)
        return seen

    return spy


def online_model(tiny_kwargs, **kwargs) -> EXPO:
    """An EXPO on Pendulum with offline data whose online buffer holds one failed and one successful episode."""
    data = offline_data(40, action_bound=2.0)  # Pendulum's actions are in [-2, 2]
    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=data, **{**tiny_kwargs, "compile_mode": None, **kwargs})
    add_episode(model.replay_buffer, 10, success=False)
    add_episode(model.replay_buffer, 5, success=True, start=100.0)
    model.set_logger(configure(None, [""]))
    return model


def test_by_default_the_base_never_imitates_failed_online_episodes(tiny_kwargs, imitated):
    model = online_model(tiny_kwargs)
    seen = imitated(model)
    model.train(gradient_steps=8, batch_size=16)
    actions = th.cat(seen).numpy().round(4)
    assert len(seen) == 8 // model.policy_delay
    assert set(np.unique(actions)) <= {OFFLINE_ACTION, SUCCESS_ACTION} and SUCCESS_ACTION in actions
    assert "train/imitation_online_share" in model.logger.name_to_value


def test_the_papers_base_imitates_every_buffer_row(tiny_kwargs, imitated):
    model = online_model(tiny_kwargs, base_imitates="all")
    seen = imitated(model)
    model.train(gradient_steps=8, batch_size=16)
    assert FAILED_ACTION in th.cat(seen).numpy().round(4)


def test_without_offline_data_the_base_imitates_the_whole_buffer(tiny_kwargs, imitated):
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "compile_mode": None})
    seen = imitated(model)
    model.learn(60)
    assert len(seen) > 0  # no "nothing to imitate" error although no episode succeeded


def test_unknown_imitation_source_is_refused(tiny_kwargs):
    with pytest.raises(ValueError, match="base_imitates"):
        EXPO("MlpPolicy", "Pendulum-v1", base_imitates="successes", **tiny_kwargs)


@pytest.mark.parametrize(
    "call, base_updates, critic_updates",
    [
        (dict(n_steps=6), 6, 2 * math.ceil(6 / 2)),  # "auto": as many critic updates as imitation steps
        (dict(n_steps=6, critic_steps=0), 6, 0),  # the paper's imitation only
        (dict(n_steps=5, critic_steps=3), 5, 3 * 2),
        (dict(n_steps=4, critic=True), 0, 4 * 2),  # the earlier spelling of critic pretraining alone
    ],
)
def test_pretraining_runs_imitation_then_critic_blocks(tiny_kwargs, call, base_updates, critic_updates):
    kwargs = {**tiny_kwargs, "gradient_steps": 2, "policy_delay": 2, "learning_starts": 100}
    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=offline_data(40), **kwargs)
    model.pretrain(**call)
    assert model._n_updates == critic_updates
    assert model._n_base_updates == base_updates + critic_updates // 2
    assert model.learning_starts == 0  # no uniform random actions after pretraining


@pytest.mark.parametrize("call", [dict(n_steps=-1), dict(n_steps=2, critic_steps=-1), dict(n_steps=2, critic_steps="all")])
def test_pretraining_refuses_bad_step_counts(tiny_kwargs, call):
    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=offline_data(40), **tiny_kwargs)
    with pytest.raises(ValueError, match="step counts"):
        model.pretrain(**call)


def test_the_imitation_source_is_saved_with_the_model(tiny_kwargs, tmp_path):
    model = EXPO("MlpPolicy", "Pendulum-v1", base_imitates="all", **tiny_kwargs)
    model.save(tmp_path / "model.zip")
    assert EXPO.load(tmp_path / "model.zip").base_imitates == "all"


# ------------------------------------------------------------------------------------------- forgetting monitor


class Reach(gym.Env):
    """Move a point on a line past 0.5 within 8 steps: terminated at success, ``info["is_success"]``."""

    observation_space = spaces.Box(-2.0, 2.0, (1,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.steps = np.zeros(1, np.float32), 0
        return self.x.copy(), {"is_success": False}

    def step(self, action):
        self.x = np.clip(self.x + 0.25 * np.asarray(action, np.float32), -2.0, 2.0)
        self.steps += 1
        success = bool(self.x[0] > 0.5)
        return self.x.copy(), float(success), success, self.steps >= 8 and not success, {"is_success": success}


def test_forgetting_monitor_records_both_actors_and_warns_once(tiny_kwargs, monkeypatch):
    x = np.linspace(-1, 0.5, 30, dtype=np.float32)[:, None]
    data = OfflineTransitions(x, np.ones((30, 1)), np.zeros(30), x + 0.25, (x[:, 0] + 0.25 > 0.5).astype(float))
    model = EXPO("MlpPolicy", Reach(), offline_dataset=data, **tiny_kwargs).pretrain(4, critic_steps=1)
    monitor = ForgettingMonitor(Reach(), eval_freq=20, n_eval_episodes=2)
    model.learn(40, callback=monitor)
    assert [steps for steps, _, _ in monitor.history] == [0, 20, 40]
    assert all(0 <= otf <= 1 and 0 <= base <= 1 for _, otf, base in monitor.history)
    assert monitor.pretrained_success_rate == monitor.history[0][1]

    rates = iter([(1.0, 1.0), (0.95, 1.0), (0.5, 0.9), (0.0, 0.9)])
    monitor = ForgettingMonitor(Reach(), eval_freq=10, n_eval_episodes=1, tolerance=0.1)
    monkeypatch.setattr(monitor, "_evaluate", lambda: next(rates))
    with pytest.warns(UserWarning, match="forgetting: success 0.50 after 20 env steps, 1.00 after pretraining") as caught:
        model.learn(30, callback=monitor, reset_num_timesteps=True)
    assert len([warning for warning in caught if "forgetting" in str(warning.message)]) == 1


@pytest.mark.parametrize("with_data, expected", [(True, 0.1), (False, 0.7)])
def test_edit_scale_auto_is_small_with_offline_data(tiny_kwargs, with_data, expected):
    data = offline_data(40, action_bound=2.0) if with_data else None
    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=data, **tiny_kwargs)
    assert model.edit_scale == expected == model.policy.edit_actor.edit_scale
    assert model.target_entropy == pytest.approx(-0.5 + math.log(expected))  # "auto" follows the resolved β
    assert EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=data, edit_scale=0.3, **tiny_kwargs).edit_scale == 0.3
