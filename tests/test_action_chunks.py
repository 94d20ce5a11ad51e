"""
EXPO acting and learning in action chunks (``action_chunk`` h > 1): open-loop execution over h calls, the SMDP
backup's discounts in the TD target, and the option's validation, saving and loading. The chunk assembly itself
(returns, discounts, episode ends, offline and online) is checked against brute force in tests/test_chunks.py.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer

from sb3_expo import EXPO
from sb3_expo.chunks import ChunkReplayBuffer
from sb3_expo.data import OfflineTransitions
from sb3_expo.evaluation import BasePolicyActor
from sb3_expo.policies import OTFAction
from sb3_expo.update import Minibatch, td_target

H = 3


def chunk_model(tiny_kwargs, **kwargs):
    return EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "action_chunk": H, **kwargs})


def counting_planner(policy):
    """Replace the OTF action by plans numbered 1, 2, ...: action i of plan k is ``0.1·k + 0.01·i`` (scaled units)."""
    plans = []

    def select(obs_features, deterministic, noise):
        plans.append(len(obs_features))
        k = len(plans)
        return th.tensor([[0.1 * k + 0.01 * i for i in range(H)]]).repeat(len(obs_features), 1)

    policy.otf_action = OTFAction(select)
    return plans


def scaled(policy, actions):
    return policy.scale_action(np.asarray(actions))


def test_the_networks_see_chunks_and_the_buffer_samples_them(tiny_kwargs):
    model = chunk_model(tiny_kwargs)
    assert model.action_chunk == H == model.policy.action_chunk
    assert model.edit_actor.mu.out_features == H and model.base.action_dim == H
    assert isinstance(model.replay_buffer, ChunkReplayBuffer) and model.replay_buffer.action_chunk == H
    assert model.target_entropy == pytest.approx(-H / 2 + H * np.log(model.edit_scale))


def test_predict_executes_a_chunk_over_h_calls_and_plans_again_after(tiny_kwargs):
    policy = chunk_model(tiny_kwargs).policy
    plans = counting_planner(policy)
    obs = np.zeros(3, dtype=np.float32)
    actions = [float(scaled(policy, policy.predict(obs)[0])[0]) for _ in range(2 * H + 1)]
    expected = [0.1 * k + 0.01 * i for k in (1, 2) for i in range(H)] + [0.3]
    np.testing.assert_allclose(actions, expected, atol=1e-6)
    assert plans == [1, 1, 1]


def test_an_ended_episode_plans_anew_in_its_env_only(tiny_kwargs):
    policy = chunk_model(tiny_kwargs).policy
    plans = counting_planner(policy)
    obs = np.zeros((2, 3), dtype=np.float32)
    policy.predict(obs)  # both envs plan (plan 1), one call
    policy.end_chunks(np.array([False, True]))  # env 1's episode ended
    second = scaled(policy, policy.predict(obs)[0])[:, 0]
    np.testing.assert_allclose(second, [0.11, 0.2], atol=1e-6)  # env 0 goes on with plan 1, env 1 starts plan 2
    assert plans == [2, 1]


def test_carried_state_is_its_own_stream_and_episode_start_restarts_it(tiny_kwargs):
    """evaluate_policy and rl-zoo's enjoy pass state and episode_start: evaluation never eats training's chunks."""
    policy = chunk_model(tiny_kwargs).policy
    plans = counting_planner(policy)
    obs = np.zeros((1, 3), dtype=np.float32)
    policy.predict(obs)  # the rollout stream: plan 1, one action used
    action, state = policy.predict(obs, None, np.ones(1, dtype=bool))  # evaluation stream: plan 2
    action, state = policy.predict(obs, state, np.zeros(1, dtype=bool))
    np.testing.assert_allclose(scaled(policy, action)[:, 0], [0.21], atol=1e-6)
    action, state = policy.predict(obs, state, np.ones(1, dtype=bool))  # a new episode: plan 3 at once
    np.testing.assert_allclose(scaled(policy, action)[:, 0], [0.3], atol=1e-6)
    np.testing.assert_allclose(scaled(policy, policy.predict(obs)[0])[:, 0], [0.11], atol=1e-6)  # rollout untouched
    assert plans == [1, 1, 1]


def test_the_td_target_bootstraps_with_each_chunks_discount(tiny_kwargs):
    """r + γ^j · (1 - terminated) · Q(s_{t+j}, a*): the SMDP backup, row by row."""
    model = chunk_model(tiny_kwargs, learning_starts=0)
    model.learn(40)
    data = model.replay_buffer.sample(16)
    assert data.actions.shape == (16, H) and data.discounts is not None
    batch = Minibatch.from_samples(model.policy, data, model.gamma)
    np.testing.assert_allclose(batch.discounts.numpy(), data.discounts.flatten().numpy())
    assert set(np.round(np.log(batch.discounts.numpy()) / np.log(model.gamma)).astype(int)) <= set(range(1, H + 1))
    candidates = th.rand(16, 4, H) * 2 - 1
    members = th.arange(model.n_critics)
    target, best = td_target(
        model.critic_target, batch.next_obs, candidates, batch.rewards, batch.not_terminal, batch.discounts, members, members
    )
    with th.no_grad():
        q = model.critic_target(batch.next_obs, candidates[th.arange(16), best]).min(dim=0).values.flatten()
    th.testing.assert_close(target, batch.rewards + batch.discounts * batch.not_terminal * q)


def test_offline_data_pretraining_and_a_reload_keep_chunks(tiny_kwargs, tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    data = OfflineTransitions(
        rng.normal(size=(n, 3)), rng.uniform(-2, 2, size=(n, 1)), rng.normal(size=n), rng.normal(size=(n, 3)),
        np.zeros(n), episode_ends=np.arange(n) % 50 == 49,
    )  # fmt: skip
    model = chunk_model(tiny_kwargs, offline_dataset=data, learning_starts=0)
    assert model.replay_buffer.sample_offline(8).actions.shape == (8, H)
    model.pretrain(10, critic_steps=2)
    model.learn(30)
    model.save(tmp_path / "chunks.zip")
    loaded = EXPO.load(tmp_path / "chunks.zip", env=gym.make("Pendulum-v1"), offline_dataset=data)
    assert loaded.action_chunk == H and loaded.replay_buffer.action_chunk == H
    assert BasePolicyActor(loaded).predict(np.zeros(3, dtype=np.float32))[0].shape == (1,)
    with pytest.raises(ValueError, match="action_chunk"):
        EXPO.load(tmp_path / "chunks.zip", env=gym.make("Pendulum-v1"), action_chunk=2)


def test_a_replay_buffer_file_of_other_chunks_is_refused_and_the_buffer_kept(tiny_kwargs, tmp_path):
    one_step = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "learning_starts": 0})
    one_step.learn(30)
    one_step.save_replay_buffer(tmp_path / "buffer.pkl")
    model = chunk_model(tiny_kwargs)
    buffer = model.replay_buffer
    with pytest.raises(ValueError, match="its buffer was kept"):
        model.load_replay_buffer(tmp_path / "buffer.pkl")
    assert model.replay_buffer is buffer


def test_bad_chunk_settings_are_refused(tiny_kwargs):
    with pytest.raises(ValueError, match="action_chunk"):
        chunk_model(tiny_kwargs, action_chunk=0)
    with pytest.raises(ValueError, match="samples single steps"):
        chunk_model(tiny_kwargs, replay_buffer_class=ReplayBuffer)


def test_one_step_samples_bootstrap_with_gamma_bit_for_bit(tiny_kwargs):
    """h = 1 keeps today's numbers: per-row discounts of γ give exactly the target of the scalar γ (th.equal)."""
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "learning_starts": 0})
    model.learn(40)
    data = model.replay_buffer.sample(16)
    batch = Minibatch.from_samples(model.policy, data, model.gamma)
    assert th.equal(batch.discounts, th.full((16,), model.gamma))
    candidates, members = th.rand(16, 4, 1) * 2 - 1, th.arange(model.n_critics)
    args = (model.critic_target, batch.next_obs, candidates, batch.rewards, batch.not_terminal)
    with th.no_grad():
        per_row, _ = td_target(*args, batch.discounts, members, members)
        scalar, _ = td_target(*args, model.gamma, members, members)
    assert th.equal(per_row, scalar)


def test_a_model_saved_before_the_new_options_existed_loads(tiny_kwargs, tmp_path):
    """A zip whose policy_kwargs lack action_chunk and base_policy (saved by an earlier version) loads with the defaults."""
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    for name in ("action_chunk", "base_policy"):
        model.policy_kwargs.pop(name, None)
    model.save(tmp_path / "old.zip")
    loaded = EXPO.load(tmp_path / "old.zip", env=gym.make("Pendulum-v1"))
    assert loaded.action_chunk == 1 and loaded.policy.base_policy == "ddpm"
    loaded.learn(60)
