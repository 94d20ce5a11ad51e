"""The flow-matching base policy (sb3_expo/flow.py) and the base-policy protocol (sb3_expo/bases.py)."""

import copy
import io

import pytest
import torch as th
from torch import nn

from sb3_expo.backend import configured
from sb3_expo.bases import ActionSampler, check_action_sampler
from sb3_expo.flow import TIME_SCALE, FlowPolicy, fast_flow_sample, flow_loss, flow_path, flow_sample, flow_velocity

th.set_num_threads(1)


def tiny_flow(n_steps: int = 3, obs_dim: int = 3, action_dim: int = 2, width: int = 16, seed: int = 0) -> FlowPolicy:
    th.manual_seed(seed)
    return FlowPolicy(obs_dim, action_dim, n_steps=n_steps, width=width, n_blocks=1)


def velocity_by_hand(policy: FlowPolicy, obs: th.Tensor, x: th.Tensor, t: float) -> th.Tensor:
    """The network at flow time t, through the public forward and embedding only."""
    return policy.denoiser(obs, x, policy.denoiser.embed_time(th.tensor([TIME_SCALE * t])))


# ------------------------------------------------------------------------------------------------ the path and the loss


def test_path_and_velocity_target_by_hand():
    x0 = th.tensor([[1.0, -2.0], [0.0, 4.0]])
    actions = th.tensor([[0.5, 0.25], [-1.0, 1.0]])
    x_t, target = flow_path(x0, actions, th.tensor([0.25, 1.0]))
    # Row 0: 0.75·x0 + 0.25·a; row 1 (t = 1): the action itself.
    th.testing.assert_close(x_t, th.tensor([[0.875, -1.4375], [-1.0, 1.0]]))
    th.testing.assert_close(target, th.tensor([[-0.5, 2.25], [-1.0, -3.0]]))
    x_start, _ = flow_path(x0, actions, th.zeros(2))
    th.testing.assert_close(x_start, x0)


def test_network_sees_scaled_flow_time():
    policy = tiny_flow()
    obs, x = th.randn(4, 3), th.randn(4, 2)
    with th.no_grad():
        per_row = flow_velocity(policy.denoiser, obs, x, th.full((4,), 0.3))
        th.testing.assert_close(per_row, velocity_by_hand(policy, obs, x, 0.3))
        # Distinct times give distinct velocities: the time reaches the network.
        assert not th.allclose(per_row, flow_velocity(policy.denoiser, obs, x, th.full((4,), 0.7)))


def test_loss_with_a_zero_network_is_the_mean_squared_target():
    policy = tiny_flow()
    with th.no_grad():
        policy.denoiser.output_layer[1].weight.zero_()  # v_θ ≡ 0: the loss is mean ||a - x0||²
    x0 = th.tensor([[1.0, -2.0], [0.0, 4.0]])
    actions = th.tensor([[0.5, 0.25], [-1.0, 1.0]])
    loss = flow_loss(policy.denoiser, th.randn(2, 3), actions, th.tensor([0.25, 0.5]), x0)
    # ||(-0.5, 2.25)||² = 5.3125, ||(-1, -3)||² = 10: summed over dimensions, averaged over rows.
    th.testing.assert_close(loss, th.tensor((5.3125 + 10.0) / 2))


def test_loss_at_fixed_draws_is_the_formula():
    policy = tiny_flow()
    obs, actions = th.randn(5, 3), th.rand(5, 2) * 2 - 1
    t, x0 = th.rand(5), th.randn(5, 2)
    rows = []
    for i in range(5):
        x_t = (1 - t[i]) * x0[i : i + 1] + t[i] * actions[i : i + 1]
        v = velocity_by_hand(policy, obs[i : i + 1], x_t, float(t[i]))
        rows.append(((v - (actions[i] - x0[i])) ** 2).sum())
    th.testing.assert_close(flow_loss(policy.denoiser, obs, actions, t, x0), th.stack(rows).mean())


def test_policy_loss_draws_uniform_time_then_gaussian_start():
    policy = tiny_flow()
    obs, actions = th.randn(6, 3), th.rand(6, 2) * 2 - 1
    th.manual_seed(1)
    loss = policy.loss(obs, actions)
    th.manual_seed(1)
    t = th.rand(6)
    expected = flow_loss(policy.denoiser, obs, actions, t, th.randn_like(actions))
    th.testing.assert_close(loss, expected)
    assert loss.ndim == 0 and loss.requires_grad


# ------------------------------------------------------------------------------------------------------ the sampler


def test_euler_sampler_equals_the_hand_unrolled_loop():
    policy = tiny_flow(n_steps=3)
    # x0 of scale 2 leaves the action box: only the end may be clipped, not the points on the way.
    obs, noise = th.randn(6, 3), 2 * th.randn(1, 6, 2)
    with th.no_grad():
        x = noise[0]
        x = x + velocity_by_hand(policy, obs, x, 0.0) / 3
        x = x + velocity_by_hand(policy, obs, x, 1 / 3) / 3
        x = x + velocity_by_hand(policy, obs, x, 2 / 3) / 3
        expected = x.clamp(-1, 1)
        th.testing.assert_close(flow_sample(policy.denoiser, obs, noise, 3), expected)
        th.testing.assert_close(policy.denoise_plain(obs, noise), expected)
        th.testing.assert_close(policy.denoise(obs, noise), expected, rtol=1e-4, atol=1e-5)


def test_one_step_is_the_start_plus_the_velocity_at_zero():
    policy = tiny_flow(n_steps=1)
    obs, noise = th.randn(5, 3), 0.3 * th.randn(1, 5, 2)
    with th.no_grad():
        expected = (noise[0] + velocity_by_hand(policy, obs, noise[0], 0.0)).clamp(-1, 1)
        th.testing.assert_close(policy.sample(obs, noise), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rows, width, n_steps", [(7, 16, 10), (300, 32, 4), (1024, 256, 2)])  # 1024 x 256: oneDNN
def test_fast_sampler_gives_the_plain_samplers_actions(rows, width, n_steps):
    policy = tiny_flow(n_steps=n_steps, obs_dim=5, action_dim=3, width=width)
    obs, noise = th.randn(rows, 5), th.randn(1, rows, 3)
    with th.no_grad():
        plain = policy.denoise_plain(obs, noise)
        th.testing.assert_close(fast_flow_sample(policy.denoiser, obs, noise, n_steps), plain, rtol=1e-4, atol=1e-4)
        with configured(cpu_chunk_rows=100):  # row chunks give the actions of one pass
            th.testing.assert_close(policy.denoise(obs, noise), plain, rtol=1e-4, atol=1e-4)


def test_sample_shapes_dtype_and_one_draw_of_noise():
    policy = tiny_flow(n_steps=4, action_dim=3)
    assert policy.noise_draws() == 1
    obs = th.randn(9, 3)
    noise = th.randn(1, 9, 3)
    kept = noise.clone()
    with th.no_grad():
        actions = policy.sample(obs, noise)
        assert actions.shape == (9, 3) and actions.dtype == th.float32
        th.testing.assert_close(noise, kept)  # the caller's draws are not overwritten
        assert policy.sample(obs).shape == (9, 3)
        th.testing.assert_close(policy.sample(obs, noise), actions)  # deterministic given its noise


def test_sampler_output_is_clipped_to_the_action_box():
    policy = tiny_flow(n_steps=4, action_dim=4)
    with th.no_grad():
        policy.denoiser.output_layer[1].weight.mul_(50.0)
        actions = policy.sample(th.randn(512, 3))
    assert actions.abs().max() <= 1.0
    assert (actions.abs() == 1.0).any()  # the clip was needed


def test_mixed_precision_sampling_is_close_to_float32():
    policy = tiny_flow(n_steps=4)
    obs, noise = th.randn(64, 3), th.randn(1, 64, 2)
    with th.no_grad():
        full = policy.sample(obs, noise)
        policy.mixed_precision = True
        half = policy.sample(obs, noise)
    assert half.dtype == th.float32
    th.testing.assert_close(half, full, rtol=0.0, atol=0.05)


# ------------------------------------------------------------------------------ copies, checkpoints and the protocol


def test_deep_copy_samples_with_its_own_weights():
    policy = tiny_flow()
    ema = copy.deepcopy(policy).requires_grad_(False)
    obs, noise = th.randn(5, 3), th.randn(1, 5, 2)
    with th.no_grad():
        before = policy.sample(obs, noise)
        th.testing.assert_close(ema.sample(obs, noise), before)
        ema.denoiser.output_layer[1].bias.add_(0.1)
        assert not th.allclose(ema.sample(obs, noise), before)
        th.testing.assert_close(policy.sample(obs, noise), before)  # the original's sampler is its own


def test_state_dict_round_trip():
    policy = tiny_flow()
    buffer = io.BytesIO()
    th.save(policy.state_dict(), buffer)
    buffer.seek(0)
    loaded = tiny_flow(seed=1)
    loaded.load_state_dict(th.load(buffer, weights_only=True))
    obs, noise = th.randn(5, 3), th.randn(1, 5, 2)
    with th.no_grad():
        th.testing.assert_close(loaded.sample(obs, noise), policy.sample(obs, noise))


def test_flow_policy_is_an_action_sampler():
    policy = tiny_flow()
    assert isinstance(policy, ActionSampler)
    check_action_sampler(policy)


def test_check_names_what_a_base_lacks():
    class NoDraws(nn.Module):
        action_dim, n_steps, mixed_precision = 2, 3, False

        def loss(self, obs, actions):
            return obs.sum()

        def sample(self, obs, noise=None):
            return obs

    with pytest.raises(TypeError, match="noise_draws"):
        check_action_sampler(NoDraws())

    class NotAModule:
        action_dim, n_steps, mixed_precision = 2, 3, False

        def loss(self, obs, actions): ...
        def sample(self, obs, noise=None): ...
        def noise_draws(self):
            return 1

    with pytest.raises(TypeError, match=r"nn\.Module"):
        check_action_sampler(NotAModule())


# ---------------------------------------------------------------------------------------------------------- learning


def test_learns_both_modes_of_a_two_mode_distribution():
    """
    Actions ±0.5 with equal probability at one observation: a working loss and sampler put most samples near the
    modes, and about as many near each; a regression to the mean (0), a wrong target or path, a sampler that runs
    time backwards or stops halfway would not (each tried at seed 0: at most 0.77 of the samples near a mode).
    """
    policy = tiny_flow(n_steps=10, obs_dim=1, action_dim=1, width=32, seed=0)
    optimizer = th.optim.Adam(policy.parameters(), lr=3e-3)
    generator = th.Generator().manual_seed(0)
    obs = th.ones(256, 1)
    for _ in range(500):
        actions = (th.randint(0, 2, (256, 1), generator=generator) - 0.5).float()
        optimizer.zero_grad()
        policy.loss(obs, actions).backward()
        optimizer.step()
    with th.no_grad():
        samples = policy.sample(th.ones(2000, 1), th.randn(1, 2000, 1, generator=generator)).squeeze(-1)
    near_plus = ((samples - 0.5).abs() < 0.15).float().mean()
    near_minus = ((samples + 0.5).abs() < 0.15).float().mean()
    assert near_plus > 0.3 and near_minus > 0.3, (near_plus, near_minus)  # seeds 0-4: 0.42 or more each
    assert near_plus + near_minus > 0.8, (near_plus, near_minus)  # seeds 0-4: 0.90 or more
