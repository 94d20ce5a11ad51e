"""The oneDNN layers of sb3_expo.backend give F.linear's numbers, and are used only where they should be."""

from collections.abc import Callable
from typing import Any

import pytest
import torch as th
from torch.nn import functional as F

from sb3_expo.backend import (
    ONEDNN_AVAILABLE,
    ONEDNN_MIN_MACS,
    Linear,
    compile_graph,
    configured,
    ensemble_linear,
    linear,
    onednn_linear,
    packed_weights,
    prepacked,
    use_onednn,
)
from sb3_expo.critics import CriticEnsemble
from sb3_expo.diffusion import DiffusionPolicy

needs_onednn = pytest.mark.skipif(not ONEDNN_AVAILABLE, reason="oneDNN on x86 only")


def onednn_calls(fn: Callable[[], Any], name: str = "mkldnn::_linear_pointwise") -> tuple[Any, int]:
    """``fn()`` and how many oneDNN matmuls (or other ops ``name``) it ran, counted by the torch profiler."""
    with th.profiler.profile(activities=[th.profiler.ProfilerActivity.CPU]) as profile:
        result = fn()
    return result, sum(event.name == name for event in profile.events())


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
        with configured(onednn=False):  # the switch the plain-vs-fast comparisons use
            assert not use_onednn(x, weight, macs)


@needs_onednn
@pytest.mark.parametrize("shared_rows", [True, False])
def test_ensemble_linear_onednn_path_equals_batched_matmul(shared_rows):
    th.manual_seed(0)
    weight, bias = th.randn(3, 64, 256), th.randn(3, 1, 256)
    x = th.randn(512, 64) if shared_rows else th.randn(3, 512, 64)
    with th.no_grad():
        th.testing.assert_close(ensemble_linear(x, weight, bias), th.matmul(x, weight) + bias, rtol=1e-5, atol=1e-4)


@needs_onednn
def test_unfused_silu_option_gives_the_same_numbers():
    x, weight, bias = large_layer()
    with th.no_grad():
        fused = linear(x, weight, bias, silu=True)
        with configured(fuse_silu=False):
            unfused, calls = onednn_calls(lambda: linear(x, weight, bias, silu=True))
    assert calls == 1  # still oneDNN's matmul, with the SiLU as a separate pass
    th.testing.assert_close(unfused, fused, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_sampler_and_critics_give_the_same_numbers_with_and_without_onednn():
    th.manual_seed(0)
    diffusion = DiffusionPolicy(obs_dim=29, action_dim=8, n_steps=5, width=128, n_blocks=2)
    critic = CriticEnsemble(obs_dim=29, action_dim=8, net_arch=[128, 128], n_critics=4)
    obs, noise, actions = th.randn(1024, 29), th.randn(5, 1024, 8), th.rand(1024, 8) * 2 - 1
    members = th.tensor([2, 0])

    def run() -> tuple[th.Tensor, ...]:
        return diffusion.denoise(obs, noise), critic(obs, actions), critic(obs, actions, members)

    with th.no_grad():
        fast, calls = onednn_calls(run)
        assert calls > 5 * 2 * 2  # at least the residual blocks' layers at every step
        with configured(onednn=False):
            plain, plain_calls = onednn_calls(run)
        assert plain_calls == 0
    for fast_values, plain_values in zip(fast, plain):
        th.testing.assert_close(fast_values, plain_values, rtol=1e-4, atol=1e-4)


@needs_onednn
@pytest.mark.parametrize("with_bias", [True, False])
def test_onednn_linear_operator_has_f_linears_gradients(with_bias):
    x, weight, bias = large_layer()
    bias = bias if with_bias else None
    upstream = th.randn(512, 128)
    leaves = [t.requires_grad_(True) for t in (x, weight, bias) if t is not None]

    def gradients(layer: Callable[..., th.Tensor], wanted: list[th.Tensor]) -> tuple[th.Tensor, ...]:
        out = layer(x, weight, bias)
        return (out, *th.autograd.grad((out * upstream).sum(), wanted))

    expected = gradients(F.linear, leaves)
    th.testing.assert_close(gradients(lambda *args: onednn_linear(*args, False), leaves), expected, rtol=1e-5, atol=1e-3)
    # A transposed (strided) weight, and only the input's gradient (the weight's is not computed).
    out, grad_x = gradients(lambda x, w, b: onednn_linear(x, w.t().contiguous().t(), b, False), [x])
    th.testing.assert_close((out, grad_x), expected[:2], rtol=1e-5, atol=1e-3)
    with pytest.raises(RuntimeError, match="no backward"):
        onednn_linear(x, weight, bias, True).sum().backward()


@needs_onednn
@pytest.mark.usefixtures("compiling")
def test_compiled_training_layers_run_on_onednn_with_the_same_gradients():
    """Inside a graph the layers, forward and backward, are oneDNN calls (inductor would pick MKL's matmul)."""
    th.manual_seed(0)
    weight, bias = th.randn(128, 96, requires_grad=True), th.randn(128, requires_grad=True)
    ensemble_weight, ensemble_bias = th.randn(3, 128, 64, requires_grad=True), th.randn(3, 1, 64, requires_grad=True)
    parameters = [weight, bias, ensemble_weight, ensemble_bias]

    def step(x: th.Tensor) -> tuple[th.Tensor, ...]:
        hidden = linear(x, weight, bias, silu=True)  # the SiLU is applied apart: it needs its pre-activations
        loss = ensemble_linear(hidden, ensemble_weight, ensemble_bias).square().mean()
        return th.autograd.grad(loss, parameters)

    x = th.randn(512, 96)
    compiled = compile_graph(step, "default", th.device("cpu"))
    compiled(x)  # compiles (tracing calls the operators on fake tensors)
    grads, calls = onednn_calls(lambda: compiled(x), name="sb3_expo::onednn_linear")
    # forward: 1 + 3 members; backward: 3 members x (input, weight) + the first layer's weight gradient
    assert calls == 4 + 6 + 1
    th.testing.assert_close(grads, step(x), rtol=1e-4, atol=1e-3)
    with configured(onednn_min_macs=1 << 40):  # below the threshold: eager F.linear numbers and no oneDNN call
        assert not use_onednn(x, weight, x.shape[0] * weight.numel())


def test_linear_module_is_a_drop_in_nn_linear():
    """The denoiser's and edit actor's layers: nn.Linear's parameters, state-dict keys and numbers."""
    th.manual_seed(0)
    layer, plain = Linear(96, 128), th.nn.Linear(96, 128)
    plain.load_state_dict(layer.state_dict())
    x = th.randn(512, 96)
    th.testing.assert_close(layer(x), plain(x))  # autograd on: F.linear itself
    with th.no_grad():  # above the threshold: oneDNN where available
        th.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-4)


@needs_onednn
def test_packed_weights_give_the_same_numbers_and_live_only_inside_their_block():
    x, weight, bias = large_layer()
    weight = th.nn.Parameter(weight)
    expected = F.linear(x, weight, bias)
    with th.no_grad(), configured(onednn_min_macs=0):
        assert prepacked(weight, 512) is weight  # outside a block: as it is
        with packed_weights():
            packed = prepacked(weight, 512)
            assert packed.is_mkldnn and prepacked(weight, 512) is packed  # packed once, then reused
            with packed_weights():
                assert prepacked(weight, 512) is packed  # a nested block keeps the outer one's
            th.testing.assert_close(linear(x, weight, bias), expected, rtol=1e-5, atol=1e-4)
            th.testing.assert_close(linear(x[:200], weight, bias), expected[:200], rtol=1e-5, atol=1e-4)  # fewer rows
            assert prepacked(bias, 512) is bias  # only parameters
            with configured(prepack_weights=False):
                assert prepacked(weight, 512) is weight
        assert prepacked(weight, 512) is weight  # dropped on exit
