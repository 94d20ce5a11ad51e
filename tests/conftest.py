import os

import pytest
import torch as th

# Tests never touch the network and run single-threaded (two shared cores: two threads are often 10x slower).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
th.set_num_threads(1)

# Tiny networks: every test runs the real algorithm, just small.
TINY_POLICY_KWARGS = dict(net_arch=[16, 16], denoiser_width=16, denoiser_blocks=1)
TINY = dict(
    learning_starts=50,
    batch_size=16,
    gradient_steps=2,
    policy_delay=2,
    n_critics=3,
    n_base_samples=3,
    n_edit_samples=2,
    diffusion_steps=4,
    policy_kwargs=TINY_POLICY_KWARGS,
    device="cpu",
)


@pytest.fixture
def tiny_kwargs():
    return {**TINY, "policy_kwargs": dict(TINY_POLICY_KWARGS)}
