"""
The base policy as an option: the DDPM (default), the rectified flow, or a network of one's own
(:mod:`sb3_expo.bases`). The flow's own maths is tested in tests/test_flow.py; here, that it plugs into EXPO.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from torch import nn

from sb3_expo import EXPO
from sb3_expo.diffusion import DiffusionPolicy
from sb3_expo.flow import FlowPolicy


def flow_kwargs(tiny_kwargs, **policy_kwargs):
    """The tiny sizes with the flow base (or ``policy_kwargs``' base) at its own default step count."""
    tiny = {key: value for key, value in tiny_kwargs.items() if key != "diffusion_steps"}
    return {**tiny, "policy_kwargs": {**tiny_kwargs["policy_kwargs"], "base_policy": "flow", **policy_kwargs}}


def test_the_default_base_is_the_papers_ddpm(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **flow_kwargs(tiny_kwargs, base_policy="ddpm"))
    assert type(model.base) is DiffusionPolicy and model.diffusion_steps == 10 == model.base.n_steps
    assert model.policy.candidate_noise(3).base.shape == (10, 3 * model.n_base_samples, 1)


def test_the_flow_base_takes_one_draw_and_its_own_default_steps(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **flow_kwargs(tiny_kwargs))
    assert type(model.base) is FlowPolicy and type(model.base_ema) is FlowPolicy
    assert model.diffusion_steps == FlowPolicy.default_steps == model.base.n_steps
    assert model.policy.candidate_noise(3).base.shape == (1, 3 * model.n_base_samples, 1)
    assert EXPO("MlpPolicy", "Pendulum-v1", **flow_kwargs(tiny_kwargs), diffusion_steps=2).base.n_steps == 2


def test_a_flow_model_learns_saves_and_loads_with_the_same_actions(tiny_kwargs, tmp_path):
    model = EXPO("MlpPolicy", "Pendulum-v1", **flow_kwargs(tiny_kwargs), seed=0)
    model.learn(120)
    assert model._n_updates > 0 and model._n_policy_updates > 0
    obs = np.stack([model.observation_space.sample() for _ in range(4)])
    action, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], action)  # fixed draws: deterministic
    model.save(tmp_path / "flow.zip")
    loaded = EXPO.load(tmp_path / "flow.zip", env=gym.make("Pendulum-v1"))
    assert type(loaded.base) is FlowPolicy and loaded.diffusion_steps == model.diffusion_steps
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)
    loaded.learn(40, reset_num_timesteps=False)


class MeanRegressor(nn.Module):
    """A base of one's own: a Gaussian around a regressed mean (no diffusion at all), built with EXPO's arguments."""

    default_steps = 1

    def __init__(self, obs_dim: int, action_dim: int, n_steps: int, width: int, n_blocks: int, dropout: float):
        super().__init__()
        self.action_dim, self.n_steps, self.mixed_precision = action_dim, n_steps, False
        self.mean = nn.Sequential(nn.Linear(obs_dim, width), nn.ReLU(), nn.Linear(width, action_dim), nn.Tanh())

    def noise_draws(self) -> int:
        return 1

    def loss(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return ((self.mean(obs) - actions) ** 2).sum(-1).mean()

    def sample(self, obs: th.Tensor, noise: th.Tensor | None = None) -> th.Tensor:
        noise = th.randn(1, obs.shape[0], self.action_dim) if noise is None else noise
        return (self.mean(obs) + 0.1 * noise[0]).clamp(-1, 1)


def test_a_base_of_ones_own_plugs_in(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **flow_kwargs(tiny_kwargs, base_policy=MeanRegressor), seed=0)
    assert type(model.base) is MeanRegressor and model.diffusion_steps == 1
    model.learn(100)
    assert model._n_policy_updates > 0


def test_a_wrong_base_is_refused_with_its_reason(tiny_kwargs):
    with pytest.raises(ValueError, match="base_policy must be one of \\['ddpm', 'flow'\\]"):
        EXPO("MlpPolicy", "Pendulum-v1", **flow_kwargs(tiny_kwargs, base_policy="consistency"))

    class NoSampler(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

    with pytest.raises(TypeError, match="NoSampler is no ActionSampler"):
        EXPO("MlpPolicy", "Pendulum-v1", **flow_kwargs(tiny_kwargs, base_policy=NoSampler))


def test_the_custom_base_example_runs(monkeypatch, capsys):
    """examples/custom_base.py, the documented way to plug in one's own base, at a few hundred steps."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "custom_base.py"
    spec = importlib.util.spec_from_file_location("custom_base", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.setattr("sys.argv", ["custom_base.py", "--steps", "260"])
    example.main()
    assert "base: GaussianBase, 1 network pass per sample" in capsys.readouterr().out
