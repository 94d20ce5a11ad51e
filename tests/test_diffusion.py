"""The diffusion base policy against docs/algorithm.md, "Networks"."""

import numpy as np
import pytest
import torch as th

from sb3_expo.backend import configured
from sb3_expo.diffusion import DiffusionPolicy, ddpm_sample, denoise_step, fixed_input_terms, vp_beta_schedule

ALPHA_BARS_T10 = [0.9422, 0.8041, 0.6216, 0.4352, 0.2760, 0.1585, 0.0825, 0.0389, 0.0166, 0.0064]


def test_vp_schedule_matches_reference_values():
    betas = vp_beta_schedule(10)
    alpha_bars = th.cumprod(1 - betas, dim=0)
    np.testing.assert_allclose(alpha_bars.numpy(), ALPHA_BARS_T10, atol=6e-5)
    assert betas.dtype == th.float32
    assert th.all(betas[1:] > betas[:-1])  # noise grows with t


def test_policy_registers_schedule_as_buffers():
    policy = DiffusionPolicy(obs_dim=3, action_dim=2, n_steps=10, width=8, n_blocks=1)
    np.testing.assert_allclose(policy.alpha_bars.numpy(), ALPHA_BARS_T10, atol=6e-5)
    assert {"betas", "alphas", "alpha_bars"} <= set(policy.state_dict())


def test_sampler_stays_in_action_bounds():
    th.manual_seed(0)
    policy = DiffusionPolicy(obs_dim=3, action_dim=4, n_steps=10, width=16, n_blocks=2)
    # Large output weights make raw denoising steps leave [-1, 1] unless every step is clipped.
    with th.no_grad():
        policy.denoiser.output_layer[1].weight.mul_(50.0)
    actions = policy.sample(th.randn(512, 3))
    assert actions.shape == (512, 4)
    assert actions.abs().max() <= 1.0
    assert (actions.abs() == 1.0).any()  # the clip was actually needed


def test_hoisted_time_embedding_equals_per_row_embedding():
    th.manual_seed(0)
    policy = DiffusionPolicy(obs_dim=3, action_dim=2, n_steps=10, width=16, n_blocks=1)
    obs, x = th.randn(5, 3), th.randn(5, 2)
    t = th.full((5,), 7)
    per_row = policy.denoiser(obs, x, t)
    hoisted = policy.denoiser(obs, x, policy.denoiser.embed_time(th.tensor([7])))
    th.testing.assert_close(per_row, hoisted)


@pytest.mark.parametrize("rows", [5, 1024])  # 1024 rows send the observation term through oneDNN
def test_sampler_step_from_fixed_input_terms_equals_the_full_input_layer(rows):
    th.manual_seed(0)
    policy = DiffusionPolicy(obs_dim=29, action_dim=8, n_steps=10, width=256, n_blocks=1)
    obs, x = th.randn(rows, 29), th.randn(rows, 8)
    with th.no_grad():
        obs_term, time_terms = fixed_input_terms(policy.denoiser, obs, th.arange(10))
        for k in (0, 9):
            full = policy.denoiser(obs, x, th.full((rows,), k))
            th.testing.assert_close(denoise_step(policy.denoiser, x, obs_term, time_terms[k]), full, rtol=1e-4, atol=1e-5)


def test_plain_sampler_follows_the_reference_update():
    """ddpm_sample is docs/algorithm.md, "Networks"'s loop; checked here against the update written out for T=2."""
    th.manual_seed(0)
    policy = DiffusionPolicy(obs_dim=3, action_dim=2, n_steps=2, width=8, n_blocks=1)
    obs, noise = th.randn(6, 3), 0.3 * th.randn(2, 6, 2)
    betas, alphas, alpha_bars = policy.betas, policy.alphas, policy.alpha_bars
    with th.no_grad():
        x = noise[0]
        eps = policy.denoiser(obs, x, th.full((6,), 1))
        x = ((x - betas[1] / (1 - alpha_bars[1]).sqrt() * eps) / alphas[1].sqrt() + betas[1].sqrt() * noise[1]).clamp(-1, 1)
        eps = policy.denoiser(obs, x, th.full((6,), 0))
        x = ((x - betas[0] / (1 - alpha_bars[0]).sqrt() * eps) / alphas[0].sqrt()).clamp(-1, 1)
        th.testing.assert_close(ddpm_sample(policy.denoiser, policy.betas, obs, noise), x)


@pytest.mark.parametrize(
    "rows, width, n_steps",
    [(7, 16, 10), (300, 32, 3), (1024, 256, 10)],  # 1024 x 256: the residual blocks' layers go through oneDNN
)
def test_fast_sampler_gives_the_plain_samplers_actions(rows, width, n_steps):
    th.manual_seed(0)
    policy = DiffusionPolicy(obs_dim=29, action_dim=8, n_steps=n_steps, width=width, n_blocks=2).eval()
    obs, noise = th.randn(rows, 29), th.randn(n_steps, rows, 8)
    with th.no_grad():
        plain = policy.denoise_plain(obs, noise)
        th.testing.assert_close(plain, ddpm_sample(policy.denoiser, policy.betas, obs, noise))
        th.testing.assert_close(policy.denoise(obs, noise), plain, rtol=1e-4, atol=1e-4)
        with configured(cpu_chunk_rows=100, onednn=False, fuse_silu=False):
            th.testing.assert_close(policy.denoise(obs, noise), plain, rtol=1e-4, atol=1e-4)


def test_ddpm_fits_and_reproduces_a_bimodal_action_set():
    """The point of an expressive base policy: a unimodal Gaussian would average the two modes."""
    th.manual_seed(0)
    policy = DiffusionPolicy(obs_dim=1, action_dim=1, n_steps=10, width=64, n_blocks=2)
    optimizer = th.optim.Adam(policy.parameters(), lr=3e-3)
    obs = th.zeros(256, 1)
    modes = th.tensor([-0.7, 0.7])

    def batch():
        return modes[th.randint(0, 2, (256,))].unsqueeze(1) + 0.02 * th.randn(256, 1)

    with th.no_grad():
        initial_loss = np.mean([policy.loss(obs, batch()).item() for _ in range(20)])
    for _ in range(1500):
        loss = policy.loss(obs, batch())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with th.no_grad():
        final_loss = np.mean([policy.loss(obs, batch()).item() for _ in range(20)])
        samples = policy.sample(th.zeros(2000, 1)).squeeze(1)
    assert final_loss < 0.5 * initial_loss
    near_low = ((samples + 0.7).abs() < 0.15).float().mean().item()
    near_high = ((samples - 0.7).abs() < 0.15).float().mean().item()
    assert near_low > 0.3 and near_high > 0.3, (near_low, near_high)
    assert near_low + near_high > 0.75  # most mass near the modes (0.78-0.91 over seeds and inits)
    assert (samples.abs() < 0.3).float().mean().item() < 0.1  # a Gaussian fit (std 0.7) would put 33% there


@pytest.mark.parametrize("n_steps", [1, 5])
def test_other_step_counts(n_steps):
    policy = DiffusionPolicy(obs_dim=2, action_dim=3, n_steps=n_steps, width=8, n_blocks=1)
    assert policy.sample(th.randn(4, 2)).shape == (4, 3)
    assert policy.loss(th.randn(4, 2), th.rand(4, 3) * 2 - 1).ndim == 0
