"""EXPO's pieces against docs/algorithm.md: edit log-prob, OTF selection, TD target, update schedule."""

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from torch import nn

from sb3_expo import EXPO
from sb3_expo.buffers import OfflineReplayBuffer
from sb3_expo.data import RewardTransform
from sb3_expo.expo import LOG_ENT_COEF_MAX, cosine_decay, td_target
from sb3_expo.policies import EditActor, squashed_gaussian_log_prob

SMALL_NETS = dict(net_arch=[16, 16], denoiser_width=16, denoiser_blocks=1)


def make_edit_actor(action_dim: int, edit_scale: float, mean: float, log_std: float) -> EditActor:
    """An edit actor whose Gaussian has a fixed mean and log-std whatever the input."""
    actor = EditActor(obs_dim=2, action_dim=action_dim, net_arch=[4], edit_scale=edit_scale)
    with th.no_grad():
        for head, value in ((actor.mu, mean), (actor.log_std, log_std)):
            head.weight.zero_()
            head.bias.fill_(value)
    return actor


@pytest.mark.parametrize("edit_scale", [0.05, 0.7])
def test_edit_log_prob_matches_a_histogram_of_edits(edit_scale):
    th.manual_seed(0)
    actor = make_edit_actor(action_dim=1, edit_scale=edit_scale, mean=0.3, log_std=-0.2)
    with th.no_grad():
        edits, log_prob = actor(th.zeros(200_000, 2), th.zeros(200_000, 1))
    edits = edits.squeeze(1).numpy()
    assert np.abs(edits).max() <= edit_scale
    counts, edges = np.histogram(edits, bins=40, range=(-edit_scale, edit_scale))
    empirical_density = counts / (len(edits) * (edges[1] - edges[0]))
    centres = th.tensor((edges[:-1] + edges[1:]) / 2, dtype=th.float32)
    # Analytic density of β·tanh(z) at the bin centres: invert, then change variables.
    z = th.atanh(centres / edit_scale)
    normal = th.distributions.Normal(0.3, math.exp(-0.2))
    analytic_density = (normal.log_prob(z).exp() / (edit_scale * (1 - th.tanh(z) ** 2))).numpy()
    # Interior bins: near ±β the density changes too fast within a bin to compare with its centre.
    populated = (counts > 500) & (np.abs(centres.numpy()) < 0.85 * edit_scale)
    np.testing.assert_allclose(empirical_density[populated], analytic_density[populated], rtol=0.08)
    # The log-prob the actor reports for its own samples is the same density.
    order = np.argsort(edits)
    reported = np.exp(log_prob.numpy()[order])
    np.testing.assert_allclose(
        np.interp(centres.numpy(), edits[order], reported)[populated], analytic_density[populated], rtol=0.02
    )


def test_edit_log_prob_integrates_to_one_and_scales_with_dimension():
    edit_scale, mean, log_std = 0.05, th.tensor([0.1]), th.tensor([-1.0])
    # 1-D: integrate the density of the edit over (-β, β) on a fine grid.
    edit = th.linspace(-edit_scale, edit_scale, 200_001, dtype=th.float64)[1:-1]
    z = th.atanh(edit / edit_scale)
    log_prob = squashed_gaussian_log_prob(z.unsqueeze(1), mean.double(), log_std.double()) - math.log(edit_scale)
    assert th.trapezoid(log_prob.exp(), edit).item() == pytest.approx(1.0, abs=1e-4)
    # d dimensions: the reported log-prob is the sum of d one-dimensional ones, each with its -log β.
    th.manual_seed(0)
    actor = make_edit_actor(3, edit_scale, mean=0.1, log_std=-1.0)
    edits, log_prob_3d = actor(th.zeros(5, 2), th.zeros(5, 3))
    z = th.atanh(edits / edit_scale)
    per_dim = squashed_gaussian_log_prob(z.unsqueeze(-1), mean, log_std) - math.log(edit_scale)
    th.testing.assert_close(log_prob_3d, per_dim.sum(dim=1), rtol=1e-4, atol=1e-3)


def test_deterministic_edit_is_the_mode():
    actor = make_edit_actor(action_dim=2, edit_scale=0.5, mean=0.4, log_std=0.0)
    edits, _ = actor(th.zeros(3, 2), th.zeros(3, 2), deterministic=True)
    th.testing.assert_close(edits, th.full((3, 2), 0.5 * math.tanh(0.4)))


def test_candidates_have_n_base_plus_k_edited_actions(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "n_base_samples": 5, "n_edit_samples": 3, "edit_scale": 0.2})
    policy = model.policy
    obs = th.randn(7, 3)
    th.manual_seed(1)
    candidates = policy.propose_candidates(obs, policy.base)
    assert candidates.shape == (7, 5 + 3, 1)
    assert candidates.abs().max() <= 1.0
    # The edited candidates are the first K base samples moved by at most β.
    th.manual_seed(1)
    base_actions = policy.base.sample(obs.repeat_interleave(5, dim=0)).view(7, 5, 1)
    th.testing.assert_close(candidates[:, :5], base_actions)
    assert (candidates[:, 5:] - base_actions[:, :3]).abs().max() <= 0.2 + 1e-6
    assert policy.score_candidates(obs, candidates).shape == (3, 7, 8)


class DistanceCritic(nn.Module):
    """Every member scores an action by minus its distance to a fixed best action (plus a member offset)."""

    def __init__(self, best: th.Tensor, n_critics: int):
        super().__init__()
        self.best, self.offsets = best, th.arange(n_critics, dtype=th.float32).view(-1, 1, 1)

    def forward(self, obs, actions, members=None):
        offsets = self.offsets if members is None else self.offsets[members]
        return -((actions - self.best) ** 2).sum(-1).unsqueeze(0) + offsets


@pytest.mark.parametrize("deterministic", [False, True])
def test_otf_action_is_the_candidate_with_the_highest_q(tiny_kwargs, deterministic, monkeypatch):
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    policy = model.policy
    candidates = th.tensor([[[0.9], [-0.5], [0.1], [0.35], [-0.9]], [[0.0], [0.5], [0.3], [0.2], [0.45]]])
    monkeypatch.setattr(policy, "propose_candidates", lambda obs, base, deterministic, noise: candidates)  # the OTF action's
    policy.critic_target = DistanceCritic(th.tensor([0.3]), policy.n_critics)
    actions = policy._predict(th.zeros(2, 3), deterministic=deterministic)
    th.testing.assert_close(actions, th.tensor([[0.35], [0.3]]))


def table_critic(q: th.Tensor):
    """A stand-in for the target critics: candidate c of state b is the action ``[c]``, valued ``q[e, b, c]``."""

    def critic(obs: th.Tensor, actions: th.Tensor, members: th.Tensor) -> th.Tensor:
        index = actions.squeeze(-1).long().unsqueeze(0).expand(len(members), -1, -1)
        return q.index_select(0, members).gather(2, index)

    return critic


def test_td_target_selects_with_one_subset_and_values_with_another():
    # E=4 critics, B=1 state, C=3 candidates. Critics 0-1 prefer candidate 2; critics 2-3 value it at 5 and 7.
    q = th.tensor([[[0.0, 1.0, 3.0]], [[0.0, 1.0, 4.0]], [[9.0, 8.0, 5.0]], [[9.0, 8.0, 7.0]]])
    candidates = th.arange(3.0).view(1, 3, 1)
    one = th.tensor([1.0])

    def target_of(not_terminal, selection, value):
        next_obs = th.zeros(1, 2)
        return td_target(table_critic(q), next_obs, candidates, one, not_terminal, 0.5, th.tensor(selection), th.tensor(value))

    target, best = target_of(one, [0, 1], [2, 3])
    assert best.tolist() == [2]
    th.testing.assert_close(target, th.tensor([1.0 + 0.5 * 5.0]))
    # Selecting with critics 2-3 picks candidate 0 instead, valued by critics 0-1 at 0.
    target, best = target_of(one, [2, 3], [0, 1])
    assert best.tolist() == [0]
    th.testing.assert_close(target, th.tensor([1.0]))
    # Terminal transitions do not bootstrap.
    target, _ = target_of(th.tensor([0.0]), [0, 1], [2, 3])
    th.testing.assert_close(target, th.tensor([1.0]))


def test_td_targets_equal_the_definition_over_all_target_critics(tiny_kwargs):
    """Scoring only the subsets' critics gives the targets of scoring all E critics, then taking the subsets."""
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "n_critics": 5})
    th.manual_seed(1)
    next_obs, rewards, not_terminal = th.randn(16, 3), th.randn(16), th.ones(16)
    candidates = th.rand(16, 6, 1) * 2 - 1
    selection, value = th.tensor([4, 1]), th.tensor([0, 2])
    with th.no_grad():
        critic, gamma = model.critic_target, model.gamma
        target, best = td_target(critic, next_obs, candidates, rewards, not_terminal, gamma, selection, value)
        q_all = model.policy.score_candidates(next_obs, candidates)  # (E, B, C)
    expected_best = q_all[selection].min(dim=0).values.argmax(dim=1)
    q_best = q_all[:, th.arange(16), expected_best]  # (E, B)
    th.testing.assert_close(best, expected_best)
    th.testing.assert_close(target, rewards + model.gamma * q_best[value].min(dim=0).values)


def filled_model(tiny_kwargs, **overrides) -> EXPO:
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, **overrides})
    model.learn(60)  # fills the buffer past learning_starts and sets up the logger
    return model


def test_target_critics_are_polyak_updated_after_every_critic_step(tiny_kwargs):
    model = filled_model(tiny_kwargs, tau=0.3, gradient_steps=3, policy_delay=100)
    target = [p.detach().clone() for p in model.critic_target.parameters()]
    online_after_step = []
    step = model.critic.optimizer.step

    def recording_step(*args, **kwargs):
        result = step(*args, **kwargs)
        online_after_step.append([p.detach().clone() for p in model.critic.parameters()])
        return result

    model.critic.optimizer.step = recording_step
    model.train(gradient_steps=3, batch_size=16)
    assert len(online_after_step) == 3
    for online in online_after_step:
        target = [(1 - 0.3) * t + 0.3 * o for t, o in zip(target, online)]
    for expected, actual in zip(target, model.critic_target.parameters()):
        th.testing.assert_close(actual, expected)


def test_policy_updates_once_per_policy_delay_critic_updates(tiny_kwargs):
    model = filled_model(tiny_kwargs, gradient_steps=3, policy_delay=2)
    model._n_updates = 0
    model._n_policy_updates = 0
    ema_before = [p.clone() for p in model.base_ema.parameters()]
    stretches = []
    propose_candidates = model.steps.candidates

    def counting_proposals(obs_features, base):
        stretches.append(len(obs_features) // 16)
        return propose_candidates(obs_features, base)

    model.steps = dataclasses.replace(model.steps, candidates=counting_proposals)
    steps = {name: 0 for name in ("base", "edit_actor")}
    for name in steps:
        optimizer = getattr(model, name).optimizer
        original = optimizer.step

        def counting_step(*args, _name=name, _original=original, **kwargs):
            steps[_name] += 1
            return _original(*args, **kwargs)

        optimizer.step = counting_step
    for _ in range(4):  # 12 critic updates -> policy updates after critic updates 2, 4, ..., 12
        model.train(gradient_steps=3, batch_size=16)
    assert steps == {"base": 6, "edit_actor": 6}
    assert model._n_policy_updates == 6 and model._n_updates == 12
    # TD-target candidates are drawn once per stretch of critic updates between two policy updates.
    assert stretches == [2, 1, 1, 2, 2, 1, 1, 2]
    assert any(not th.equal(a, b) for a, b in zip(ema_before, model.base_ema.parameters()))


@pytest.mark.slow  # 1e5 temperature updates
def test_temperature_stays_finite_over_1e5_updates_with_the_reference_target(tiny_kwargs):
    """At β=0.05 the reference target -d/2 is unreachable: the entropy of β·u is at most d·log(2β)."""
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "edit_scale": 0.05, "target_entropy": -0.5})
    best_log_prob = th.full((16,), -math.log(2 * 0.05))  # the largest entropy an edit of scale 0.05 can have
    for _ in range(100_000):
        model._temperature_step(-best_log_prob.mean())
    assert math.isfinite(model.log_ent_coef.item())
    assert model.log_ent_coef.item() == pytest.approx(LOG_ENT_COEF_MAX)
    actor_loss = model.log_ent_coef.exp() * best_log_prob.mean()
    assert th.isfinite(actor_loss).all()


def test_default_target_entropy_is_reachable_and_measured_on_u(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "edit_scale": 0.05})
    assert model.target_entropy == pytest.approx(-0.5 + math.log(0.05))
    assert model.target_entropy < math.log(2 * 0.05)  # below the largest reachable entropy
    # Entropy above target lowers α, below target raises it.
    start = model.log_ent_coef.item()
    model._temperature_step(th.tensor(math.log(2 * 0.05)))
    assert model.log_ent_coef.item() < start


def test_cosine_decay():
    assert cosine_decay(0, 100) == 1.0
    assert cosine_decay(50, 100) == pytest.approx(0.5)
    assert cosine_decay(100, 100) == pytest.approx(0.0)
    assert cosine_decay(500, 100) == pytest.approx(0.0)
    assert cosine_decay(10**9, None) == 1.0


def test_training_sets_decayed_policy_learning_rates(tiny_kwargs):
    model = filled_model(tiny_kwargs, policy_lr_decay_steps=10, learning_rate=1e-3)
    model._n_policy_updates = 5
    model._n_base_updates = 5
    model.train(gradient_steps=2, batch_size=16)
    assert model.critic.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert model.base.optimizer.param_groups[0]["lr"] == pytest.approx(0.5e-3)
    assert model.edit_actor.optimizer.param_groups[0]["lr"] == pytest.approx(0.5e-3)
    assert model.base.optimizer.param_groups[0]["weight_decay"] == pytest.approx(1e-4)


@pytest.mark.parametrize("fused", [True, False])
def test_nan_loss_raises_a_clear_error_and_leaves_the_critics_as_they_were(tiny_kwargs, fused):
    """A NaN critic loss skips its optimiser step (fused Adam on the device, others by a host check)."""
    optimizer_kwargs = {} if fused else {"optimizer_kwargs": {"fused": False}}
    tiny_kwargs["policy_kwargs"].update(optimizer_kwargs)
    model = filled_model(tiny_kwargs)
    model.replay_buffer.rewards[:] = np.nan
    critics = {name: value.clone() for name, value in model.critic.state_dict().items()}
    moments = [state["exp_avg"].clone() for state in model.critic.optimizer.state.values()]
    with pytest.raises(FloatingPointError, match="critic_loss became nan"):
        model.train(gradient_steps=2, batch_size=16)
    for name, value in model.critic.state_dict().items():
        th.testing.assert_close(value, critics[name], rtol=0, atol=0)
    for state, before in zip(model.critic.optimizer.state.values(), moments, strict=True):
        th.testing.assert_close(state["exp_avg"], before, rtol=0, atol=0)
    assert all(th.isfinite(p).all() for p in model.policy.parameters())


class WideBoundsPendulum(gym.Wrapper):
    def __init__(self, low, high):
        super().__init__(gym.make("Pendulum-v1"))
        self.action_space = gym.spaces.Box(low, high, (1,), np.float32)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_base_samples": 2, "n_edit_samples": 3}, "n_edit_samples <= n_base_samples"),
        ({"edit_scale": 0.0}, "edit_scale"),
        ({"edit_scale": -0.1}, "edit_scale"),
        ({"edit_scale": float("nan")}, "edit_scale"),
        ({"critic_subset_size": 4}, "critic_subset_size"),
        ({"policy_delay": 0}, "policy_delay"),
        ({"ent_coef": "auto_0"}, "ent_coef"),
        ({"gradient_steps": 0}, "gradient_steps must be >= 1"),
        ({"gradient_steps": -2}, "gradient_steps must be >= 1"),
        ({"diffusion_steps": 0}, "diffusion_steps"),
        ({"policy_kwargs": {**SMALL_NETS, "n_critics": 2}}, r"policy_kwargs n_critics=2 vs EXPO n_critics=3"),
        ({"reward_shift": -1.0, "replay_buffer_class": ReplayBuffer}, "ReplayBuffer does not"),
        (
            {"offline_ratio": 0.3, "replay_buffer_class": OfflineReplayBuffer, "replay_buffer_kwargs": {"offline_ratio": 0.2}},
            "replay_buffer_kwargs offline_ratio=0.2 disagrees",
        ),
    ],
)
def test_bad_arguments_are_rejected_clearly(tiny_kwargs, overrides, message):
    with pytest.raises(ValueError, match=message):
        EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, **overrides})


def test_infinite_action_bounds_are_rejected(tiny_kwargs):
    with pytest.raises(AssertionError, match="finite lower and upper bound"):
        EXPO("MlpPolicy", WideBoundsPendulum(-np.inf, np.inf), **tiny_kwargs)


def test_discrete_actions_are_rejected(tiny_kwargs):
    with pytest.raises(AssertionError, match="Box"):
        EXPO("MlpPolicy", "CartPole-v1", **tiny_kwargs)


def test_temperature_gradient_is_alpha_times_the_entropy_gap(tiny_kwargs):
    """The reference's loss α·(H - H*): its gradient in log α is α·(H - H*) (SB3's log α·(H - H*) lacks the α)."""
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "ent_coef": "auto_0.1"})
    log_prob = th.full((16,), 0.3)
    gradients = []
    model.ent_coef_optimizer.step = lambda: gradients.append(model.log_ent_coef.grad.clone())
    model._temperature_step(-log_prob.mean())
    entropy_gap = -0.3 - model.target_entropy
    assert gradients[0].item() == pytest.approx(0.1 * entropy_gap, rel=1e-5)


def test_networks_start_from_the_reference_initialisation(tiny_kwargs):
    policy = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs).policy
    actor = policy.edit_actor
    for layer in [*[m for m in actor.latent if isinstance(m, nn.Linear)], actor.mu, actor.log_std]:
        bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))  # Xavier-uniform
        assert layer.weight.abs().max() <= bound and th.all(layer.bias == 0)
    denoiser = policy.base.denoiser
    for layer in [denoiser.input_layer, denoiser.output_layer[-1], denoiser.time_embedding[1], denoiser.time_embedding[3]]:
        assert layer.weight.abs().max() <= math.sqrt(6.0 / (layer.in_features + layer.out_features))
        assert th.all(layer.bias == 0)
    for block in denoiser.blocks:
        norm, hidden, output = block.net[1], block.net[2], block.net[3]
        assert norm.eps == 1e-6
        for layer in (hidden, output):  # LeCun-normal truncated at 2 std: |w| <= 2·sqrt(1/fan_in)/0.8796
            assert layer.weight.abs().max() <= 2 * math.sqrt(1 / layer.in_features) / 0.8796 + 1e-6
            assert th.all(layer.bias == 0)


def test_lecun_normal_has_variance_one_over_fan_in():
    from sb3_expo.diffusion import lecun_normal_

    th.manual_seed(0)
    layer = lecun_normal_(nn.Linear(256, 1024))
    assert layer.weight.var().item() == pytest.approx(1 / 256, rel=0.02)


def test_one_policy_kwargs_dict_configures_several_models(tiny_kwargs):
    """EXPO copies policy_kwargs before adding its options, so a shared dict (rl-zoo's trials) is left as given."""
    shared = dict(SMALL_NETS)
    first = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "policy_kwargs": shared, "edit_scale": 0.3})
    second = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "policy_kwargs": shared, "edit_scale": 0.6})
    assert shared == SMALL_NETS
    assert (first.edit_scale, second.edit_scale) == (0.3, 0.6) == (first.policy.edit_scale, second.policy.edit_scale)


def test_the_callers_replay_buffer_kwargs_are_left_as_given(tiny_kwargs):
    shared = {"offline_ratio": 0.3}
    EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "reward_shift": -1.0, "replay_buffer_class": OfflineReplayBuffer,
                                        "replay_buffer_kwargs": shared})  # fmt: skip
    assert shared == {"offline_ratio": 0.3}


def test_identical_options_in_policy_kwargs_are_accepted(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "policy_kwargs": {**SMALL_NETS, "n_critics": 3}})
    assert model.n_critics == model.policy.n_critics == 3


def test_reward_transform_reaches_an_offline_buffer_class_given_explicitly(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", reward_shift=-1.0, replay_buffer_class=OfflineReplayBuffer, **tiny_kwargs)
    assert model.replay_buffer.reward_transform.shift == -1.0 and model.replay_buffer.offline_ratio == 0.5


def test_large_edit_scale_warns(tiny_kwargs):
    with pytest.warns(UserWarning, match="edit_scale"):
        EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "edit_scale": 1.5})


@pytest.mark.skipif(th.cuda.is_available(), reason="checks the fallback when CUDA is missing")
def test_cuda_without_a_gpu_warns(tiny_kwargs):
    with pytest.warns(UserWarning, match="CUDA is not available"):
        model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "device": "cuda"})
    assert model.device.type == "cpu"


def test_unknown_policy_name_lists_the_valid_ones(tiny_kwargs):
    with pytest.raises(ValueError, match=r"\['MlpPolicy', 'MultiInputPolicy'\]"):
        EXPO("CnnPolicy", "Pendulum-v1", **tiny_kwargs)


def test_buffer_kwargs_set_what_expo_leaves_at_its_default(tiny_kwargs):
    transform = RewardTransform(shift=-1.0)
    buffer_kwargs = {"reward_transform": transform, "offline_ratio": 0.25}
    buffer = dict(replay_buffer_class=OfflineReplayBuffer, replay_buffer_kwargs=buffer_kwargs)
    model = EXPO("MlpPolicy", "Pendulum-v1", **buffer, **tiny_kwargs)
    assert model.replay_buffer.reward_transform == transform and model.replay_buffer.offline_ratio == 0.25


class CorruptAfter(gym.Wrapper):
    """Pendulum whose reward (or observation) becomes NaN from env step ``after`` on."""

    def __init__(self, after: int, what: str):
        super().__init__(gym.make("Pendulum-v1"))
        self.after, self.what, self.steps = after, what, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps >= self.after:
            obs, reward = (obs * np.nan, reward) if self.what == "observation" else (obs, float("nan"))
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize("what", ["reward", "observation"])
def test_non_finite_env_output_is_refused_before_it_enters_the_buffer(tiny_kwargs, what):
    model = EXPO("MlpPolicy", CorruptAfter(70, what), **tiny_kwargs)
    with pytest.raises(ValueError, match=f"non-finite {what} at env step 70"):
        model.learn(100)
    assert model.replay_buffer.size() == 69
    assert np.isfinite(model.replay_buffer.rewards[:69]).all() and np.isfinite(model.replay_buffer.observations[:69]).all()
    assert all(th.isfinite(parameter).all() for parameter in model.policy.parameters())
    model.set_env(gym.make("Pendulum-v1"))
    model.learn(20, reset_num_timesteps=False)  # continues with a fixed env
    assert model.replay_buffer.size() == 89
