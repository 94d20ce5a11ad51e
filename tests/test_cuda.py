"""The GPU paths: the same numbers as on the CPU and as eager, CUDA graphs included. Skipped without CUDA.

On a machine with a GPU, ``pytest tests/test_cuda.py`` runs them all (a few minutes, most of it compiling).
"""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.logger import configure
from test_speed_paths import fill_buffer

from sb3_expo import EXPO
from sb3_expo.critics import CriticEnsemble
from sb3_expo.diffusion import DiffusionPolicy

pytestmark = pytest.mark.skipif(not th.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def no_tf32():
    """Full float32 matmuls, so that GPU and CPU results can be compared at float32 tolerances."""
    matmul, cudnn = th.backends.cuda.matmul.allow_tf32, th.backends.cudnn.allow_tf32
    th.backends.cuda.matmul.allow_tf32 = th.backends.cudnn.allow_tf32 = False
    yield
    th.backends.cuda.matmul.allow_tf32, th.backends.cudnn.allow_tf32 = matmul, cudnn


def test_sampler_and_critics_on_cuda_equal_the_cpu():
    th.manual_seed(0)
    policy = DiffusionPolicy(obs_dim=29, action_dim=8, n_steps=10, width=64, n_blocks=2).eval()
    critic = CriticEnsemble(29, 8, [64, 64], n_critics=5)
    obs, noise, actions = th.randn(300, 29), th.randn(10, 300, 8), th.rand(300, 8) * 2 - 1
    members = th.tensor([4, 1])
    with th.no_grad():
        cpu = policy.denoise(obs, noise), critic(obs, actions), critic(obs, actions, members)
        policy.cuda(), critic.cuda()
        gpu = (
            policy.denoise(obs.cuda(), noise.cuda()),
            critic(obs.cuda(), actions.cuda()),
            critic(obs.cuda(), actions.cuda(), members.cuda()),
        )
    for on_cpu, on_gpu in zip(cpu, gpu):
        th.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("compile_mode", ["default", "reduce-overhead"])
def test_compiled_training_on_cuda_equals_eager(tiny_kwargs, compile_mode):
    """``reduce-overhead`` replays the sampler, TD target and critic step as CUDA graphs: same parameters."""

    def train(mode):
        model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "device": "cuda", "compile_mode": mode}, seed=0)
        fill_buffer(model, 200)
        model.set_logger(configure(None, []))
        th.manual_seed(1)
        for _ in range(3):  # CUDA graphs record on the first calls and replay afterwards
            model.train(gradient_steps=4, batch_size=16)
        return model.policy.state_dict()

    eager, compiled = train(None), train(compile_mode)
    for name, value in eager.items():
        th.testing.assert_close(compiled[name], value, rtol=1e-4, atol=1e-4, msg=name)


def test_mixed_precision_learns_on_cuda(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "device": "cuda"}, mixed_precision=True, seed=0)
    model.learn(200)
    assert model.base.mixed_precision
    action, _ = model.predict(np.zeros(3, dtype=np.float32))
    assert action.shape == (1,) and np.isfinite(action).all()
