"""The oneDNN inference path of sb3_expo.linear gives F.linear's numbers, and is used only where it should be."""

import pytest
import torch as th
from torch.nn import functional as F

from sb3_expo import linear as linear_module
from sb3_expo.critics import CriticEnsemble
from sb3_expo.diffusion import DiffusionPolicy
from sb3_expo.linear import ONEDNN_MIN_MACS, ensemble_linear, linear, use_onednn

needs_onednn = pytest.mark.skipif(not linear_module.ONEDNN_AVAILABLE, reason="oneDNN on x86 only")


def large_layer() -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    th.manual_seed(0)
    return th.randn(512, 96), th.randn(128, 96), th.randn(128)  # 512 * 96 * 128 multiply-adds: above the threshold


@needs_onednn
def test_large_no_grad_layers_use_onednn_with_the_same_numbers():
    x, weight, bias = large_layer()
    assert x.shape[0] * weight.numel() >= ONEDNN_MIN_MACS
    with th.no_grad():
        assert use_onednn(x, weight, x.shape[0] * weight.numel())
        th.testing.assert_close(linear(x, weight, bias), F.linear(x, weight, bias), rtol=1e-5, atol=1e-4)
        th.testing.assert_close(linear(x.view(8, 64, 96), weight, bias), F.linear(x, weight, bias).view(8, 64, 128))


@needs_onednn
def test_fused_silu_equals_silu_after_the_layer():
    x, weight, bias = large_layer()
    with th.no_grad():
        th.testing.assert_close(linear(x, weight, bias, silu=True), F.silu(F.linear(x, weight, bias)), rtol=1e-5, atol=1e-4)
    weight.requires_grad_(True)  # the F.linear path applies the same SiLU
    th.testing.assert_close(linear(x, weight, bias, silu=True), F.silu(F.linear(x, weight, bias)))


def test_training_small_layers_and_autocast_keep_f_linear():
    x, weight, bias = large_layer()
    macs = x.shape[0] * weight.numel()
    weight.requires_grad_(True)
    assert not use_onednn(x, weight, macs)  # autograd needs F.linear's backward
    linear(x, weight, bias).sum().backward()
    th.testing.assert_close(weight.grad, (th.ones(512, 128).T @ x))
    with th.no_grad():
        assert not use_onednn(x, weight, ONEDNN_MIN_MACS - 1)
        with th.autocast("cpu", dtype=th.bfloat16):
            assert not use_onednn(x, weight, macs)
        assert not use_onednn(x.double(), weight.double(), macs)


@needs_onednn
@pytest.mark.parametrize("shared_rows", [True, False])
def test_ensemble_linear_onednn_path_equals_batched_matmul(shared_rows):
    th.manual_seed(0)
    weight, bias = th.randn(3, 64, 256), th.randn(3, 1, 256)
    x = th.randn(512, 64) if shared_rows else th.randn(3, 512, 64)
    with th.no_grad():
        th.testing.assert_close(ensemble_linear(x, weight, bias), th.matmul(x, weight) + bias, rtol=1e-5, atol=1e-4)


@needs_onednn
def test_sampler_and_critics_give_the_same_numbers_with_and_without_onednn(monkeypatch):
    th.manual_seed(0)
    diffusion = DiffusionPolicy(obs_dim=29, action_dim=8, n_steps=5, width=128, n_blocks=2)
    critic = CriticEnsemble(obs_dim=29, action_dim=8, net_arch=[128, 128], n_critics=4)
    obs, noise, actions = th.randn(1024, 29), th.randn(5, 1024, 8), th.rand(1024, 8) * 2 - 1
    members = th.tensor([2, 0])
    onednn_calls = []
    onednn_linear = linear_module._onednn_linear
    monkeypatch.setattr(linear_module, "_onednn_linear", lambda *args: onednn_calls.append(1) or onednn_linear(*args))
    with th.no_grad():
        fast = diffusion.denoise(obs, noise), critic(obs, actions), critic(obs, actions, members)
        assert len(onednn_calls) > 5 * 2 * 2  # at least the residual blocks' layers at every step
        monkeypatch.setattr(linear_module, "ONEDNN_AVAILABLE", False)
        plain = diffusion.denoise(obs, noise), critic(obs, actions), critic(obs, actions, members)
    for fast_values, plain_values in zip(fast, plain):
        th.testing.assert_close(fast_values, plain_values, rtol=1e-4, atol=1e-4)
