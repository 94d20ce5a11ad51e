"""Every optimised path gives the numbers of the plain one: speed never changes the algorithm.

The vectorised critic ensemble (tests/test_critics.py) and the hoisted time embedding
(tests/test_diffusion.py) are checked next to their modules; here: explicit sampler noise, candidates
drawn for many TD-target batches at once, ``torch.compile`` and bf16 autocast.
"""

import numpy as np
import pytest
import torch as th

from sb3_expo import EXPO
from sb3_expo.backend import configured
from sb3_expo.diffusion import DiffusionPolicy


def fill_buffer(model: EXPO, n: int, seed: int = 0) -> None:
    """Random transitions in the replay buffer, so train() can run without env steps."""
    rng = np.random.default_rng(seed)
    obs_dim, action_dim = model.observation_space.shape[0], model.action_space.shape[0]
    for _ in range(n):
        obs, next_obs = rng.normal(size=(2, 1, obs_dim)).astype(np.float32)
        action = rng.uniform(-1, 1, size=(1, action_dim)).astype(np.float32)
        model.replay_buffer.add(obs, next_obs, action, rng.normal(size=1), np.array([rng.random() < 0.1]), [{}])


def test_sampler_draws_its_noise_up_front():
    policy = DiffusionPolicy(obs_dim=3, action_dim=2, n_steps=5, width=16, n_blocks=1).eval()
    obs = th.randn(7, 3)
    th.manual_seed(0)
    sampled = policy.sample(obs)
    th.manual_seed(0)
    noise = th.randn(5, 7, 2)
    assert th.equal(sampled, policy.denoise(obs, noise))
    # Each row depends only on its own noise: a slice of the batch gives the same actions.
    assert th.allclose(policy.denoise(obs[2:5], noise[:, 2:5]), sampled[2:5], atol=1e-6)


def test_cpu_chunks_give_the_actions_of_one_pass():
    policy = DiffusionPolicy(obs_dim=3, action_dim=2, n_steps=4, width=16, n_blocks=1).eval()
    obs, noise = th.randn(50, 3), th.randn(4, 50, 2)
    with th.no_grad():
        one_pass = policy.denoise(obs, noise)
        with configured(cpu_chunk_rows=16):  # 16 + 16 + 16 + 2 rows
            chunked = policy.denoise(obs, noise)
    assert th.allclose(chunked, one_pass, atol=1e-6)
    assert th.allclose(one_pass, policy.denoise_plain(obs, noise), atol=1e-5)


@pytest.mark.usefixtures("compiling")
def test_compiled_sampler_gives_the_plain_samplers_actions():
    """Dynamo captures the whole sampler in one graph (backend="eager" skips inductor's code generation)."""
    th.manual_seed(0)
    policy = DiffusionPolicy(obs_dim=3, action_dim=2, n_steps=4, width=16, n_blocks=1).eval()
    obs, noise = th.randn(40, 3), th.randn(4, 40, 2)
    sampler = th.compile(policy.denoise_eager, backend="eager", fullgraph=True)
    with th.no_grad():
        compiled = sampler(obs, noise)
    assert th.allclose(compiled, policy.denoise_plain(obs, noise), atol=1e-5)


def test_candidates_of_many_batches_at_once_equal_those_of_each_batch(tiny_kwargs):
    """train() proposes the TD-target candidates of a whole stretch of critic steps in one pass."""
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs, seed=0)
    policy, n, k = model.policy, model.n_base_samples, model.n_edit_samples
    next_obs = th.randn(4 * 5, 3)
    noise = policy.candidate_noise(20)
    with th.no_grad():
        together = policy.propose_candidates(next_obs, model.base, noise=noise)
        one_by_one = [
            policy.propose_candidates(next_obs[i : i + 5], model.base, noise=noise.rows(i, i + 5, n, k))
            for i in range(0, 20, 5)
        ]
    assert together.shape == (20, n + k, 1)
    assert th.allclose(together, th.cat(one_by_one), atol=1e-6)


def test_mixed_precision_sampler_is_close_to_float32():
    th.manual_seed(0)
    policy = DiffusionPolicy(obs_dim=3, action_dim=2, n_steps=5, width=32, n_blocks=2).eval()
    obs, noise = th.randn(64, 3), th.randn(5, 64, 2)
    with th.no_grad():
        full = policy.denoise(obs, noise)
        policy.mixed_precision = True
        half = policy.denoise(obs, noise)
    assert half.dtype == th.float32
    assert not th.equal(half, full)  # the flag does change the arithmetic
    # bf16 rounding, amplified through T clipped steps of an untrained (reference-initialised) denoiser: a few rows
    # move by up to 0.15, the typical one by 0.003-0.006 (5 seeds).
    assert (half - full).abs().mean() < 0.01
    assert (half - full).abs().quantile(0.9) < 0.02


def test_mixed_precision_is_saved_with_the_model(tiny_kwargs, tmp_path):
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs, mixed_precision=True)
    assert model.base.mixed_precision and model.base_ema.mixed_precision
    model.save(tmp_path / "model.zip")
    loaded = EXPO.load(tmp_path / "model.zip")
    assert loaded.mixed_precision and loaded.base_ema.mixed_precision
