"""RLPD as SAC + LayerNorm ensemble: the three changes, Dict observations with offline data, save/load."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sb3_expo import rlpd as rlpd_module
from sb3_expo.buffers import DictOfflineReplayBuffer
from sb3_expo.critics import EnsembleLayerNorm, EnsembleLinear
from sb3_expo.data import OfflineTransitions, RewardTransform
from sb3_expo.rlpd import RLPD, LayerNormCritic
from sb3_expo.tasks.pointmaze import make_pointmaze_env

TINY = dict(learning_starts=20, batch_size=16, gradient_steps=2, policy_kwargs=dict(net_arch=[16, 16]), device="cpu")


def make_rlpd(**kwargs) -> RLPD:
    return RLPD("MlpPolicy", "Pendulum-v1", **{**TINY, "n_critics": 4, "critic_subset_size": 2, "seed": 0, **kwargs})


def random_batch(n: int = 8) -> ReplayBufferSamples:
    return ReplayBufferSamples(
        observations=th.randn(n, 3),
        actions=th.rand(n, 1) * 2 - 1,
        next_observations=th.randn(n, 3),
        dones=th.tensor([[0.0]] * (n - 1) + [[1.0]]),
        rewards=th.randn(n, 1),
    )


def test_critic_is_a_layernorm_ensemble():
    model = make_rlpd()
    for critic in (model.critic, model.critic_target):
        assert isinstance(critic, LayerNormCritic) and critic.n_critics == 4
        layers = list(critic.ensemble.q_networks)
        # Linear → LayerNorm → ReLU for each hidden layer, then the output Linear.
        assert [type(layer) for layer in layers[:3]] == [EnsembleLinear, EnsembleLayerNorm, th.nn.ReLU]
        assert sum(isinstance(layer, EnsembleLayerNorm) for layer in layers) == 2
        assert isinstance(layers[-1], EnsembleLinear)
    assert model.critic(th.randn(5, 3), th.rand(5, 1)).shape == (4, 5)


def test_td_target_is_the_minimum_over_a_random_subset(monkeypatch):
    model = make_rlpd(ent_coef=0.3)
    data = random_batch()
    th.manual_seed(1)
    with th.no_grad():
        next_actions, next_log_prob = model.actor.action_log_prob(data.next_observations)
        q_all = model.critic_target(data.next_observations, next_actions)
    members = q_all.mean(dim=1).argsort()[-2:]  # the two most optimistic critics: their minimum is not the full one
    assert not th.allclose(q_all[members].min(dim=0).values, q_all.min(dim=0).values)

    monkeypatch.setattr(rlpd_module, "random_subsets", lambda n, k, draws, device: members.view(1, 2))
    th.manual_seed(1)  # the same next actions
    target = model._td_target(data, model._current_ent_coef())
    soft_q = q_all[members].min(dim=0).values - 0.3 * next_log_prob
    expected = data.rewards.flatten() + (1 - data.dones.flatten()) * model.gamma * soft_q
    th.testing.assert_close(target, expected)
    assert target[-1] == data.rewards[-1, 0]  # a terminal does not bootstrap


def test_subsets_are_redrawn_for_every_critic_update(monkeypatch):
    model = make_rlpd()
    draws = []
    real = rlpd_module.random_subsets
    monkeypatch.setattr(rlpd_module, "random_subsets", lambda *args: draws.append(real(*args)) or draws[-1])
    model.learn(30)  # 10 env steps of learning, 2 critic updates each
    assert len(draws) == 20 and all(d.shape == (1, 2) for d in draws)
    assert len({tuple(d[0].sort().values.tolist()) for d in draws}) > 1


def test_actor_loss_uses_the_ensemble_mean():
    model = make_rlpd(ent_coef=0.0)
    obs = th.randn(8, 3)
    th.manual_seed(2)
    with th.no_grad():
        actions, _ = model.actor.action_log_prob(obs)
        q_values = model.critic(obs, actions)
    th.manual_seed(2)
    metrics = {}
    model._actor_step(obs, model._current_ent_coef(), metrics)
    assert metrics["actor_loss"][0] == pytest.approx(-q_values.mean().item(), rel=1e-5)
    assert metrics["actor_loss"][0] != pytest.approx(-q_values.min(dim=0).values.mean().item(), rel=1e-3)
    assert all(p.grad is None for p in model.critic.parameters())  # the actor step leaves the critic alone


def test_policy_delay_counts_actor_updates_across_calls():
    model = make_rlpd(policy_delay=3, gradient_steps=2)
    model.learn(23)  # 3 env steps of learning: 6 critic updates, 2 actor updates
    assert model._n_updates == 6
    adam_state = next(iter(model.actor.optimizer.state.values()))
    assert int(adam_state["step"]) == 2


def random_offline_data(env: gym.Env, n: int = 64) -> OfflineTransitions:
    """Random-action PointMaze transitions in the env's Dict layout."""
    rng = np.random.default_rng(0)
    obs = [env.observation_space.sample() for _ in range(n)]
    stack = {key: np.stack([o[key] for o in obs]) for key in obs[0]}
    actions = rng.uniform(env.action_space.low, env.action_space.high, size=(n, *env.action_space.shape))
    return OfflineTransitions(stack, actions, rng.random(n), stack, np.zeros(n))


def test_learns_with_dict_observations_and_offline_data_then_round_trips(tmp_path):
    env = make_pointmaze_env(max_episode_steps=20)
    model = RLPD(
        "MultiInputPolicy",
        env,
        **{**TINY, "learning_starts": 0},
        n_critics=3,
        policy_delay=2,
        seed=0,
        replay_buffer_class=DictOfflineReplayBuffer,
        replay_buffer_kwargs=dict(offline_ratio=0.5, reward_transform=RewardTransform(shift=-1.0)),
    )
    model.replay_buffer.attach_offline(random_offline_data(env))
    model.learn(40)
    assert model.replay_buffer.size() == 40 and model._n_updates == 80
    assert np.isfinite(model.logger.name_to_value["train/critic_loss"])

    model.save(tmp_path / "rlpd.zip")
    loaded = RLPD.load(tmp_path / "rlpd.zip", env=make_pointmaze_env(max_episode_steps=20), device="cpu")
    assert (loaded.n_critics, loaded.critic_subset_size, loaded.policy_delay) == (3, 2, 2)
    assert isinstance(loaded.critic, LayerNormCritic)
    for saved, restored in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values()):
        th.testing.assert_close(saved, restored)
    obs = {key: np.stack([value] * 4) for key, value in env.observation_space.sample().items()}
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_rejects_bad_subset_size_and_policy_delay():
    with pytest.raises(ValueError, match="critic_subset_size"):
        make_rlpd(critic_subset_size=5)
    with pytest.raises(ValueError, match="policy_delay"):
        make_rlpd(policy_delay=0)
