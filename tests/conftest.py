import os

# Tests never touch the network and run single-threaded (two shared cores: two threads are often 10x slower).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# No torch.compile (here and in the tests' subprocesses): compile_mode="auto" would compile every small model, at
# seconds per model. The compiled graphs are tested in tests/test_compiled.py, which switches compiling back on.
os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import pytest
import torch as th

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
    compile_mode=None,  # eager: compiling costs seconds per model (tests/test_compiled.py covers the graphs)
)


@pytest.fixture
def compiling():
    """torch.compile on again inside a test that tests compiled graphs (see TORCH_COMPILE_DISABLE above)."""
    with th._dynamo.config.patch(disable=False):
        yield


@pytest.fixture
def tiny_kwargs():
    return {**TINY, "policy_kwargs": dict(TINY_POLICY_KWARGS)}
