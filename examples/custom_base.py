"""
A base policy of one's own inside EXPO: any ``nn.Module`` with the members of ``sb3_expo.bases.ActionSampler``.

Here a small conditional Gaussian (a mean network and a learned spread) stands in for the DDPM; a pretrained
generative policy from another library plugs in the same way, wrapped so that ``sample`` is a function of the noise
EXPO draws and ``loss`` is its imitation loss. EXPO then trains its critics and edit actor around it, samples its
candidates and keeps its EMA copy, as for the DDPM.

    python examples/custom_base.py --steps 2000
"""

import argparse

import torch as th
from torch import nn

from sb3_expo import EXPO
from sb3_expo.bases import check_action_sampler


class GaussianBase(nn.Module):
    """
    ``a = clip(μ(s) + σ(s)·z, -1, 1)`` with one Gaussian draw ``z``, trained by maximum likelihood on (clipped)
    demonstration actions. EXPO builds it as ``GaussianBase(obs_dim, action_dim, n_steps=..., width=..., ...)``.
    """

    default_steps = 1  # one network pass per sample

    def __init__(self, obs_dim: int, action_dim: int, n_steps: int = 1, width: int = 256, **unused: object):
        super().__init__()
        self.action_dim, self.n_steps, self.mixed_precision = action_dim, n_steps, False
        self.net = nn.Sequential(nn.Linear(obs_dim, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU())
        self.mean, self.log_std = nn.Linear(width, action_dim), nn.Linear(width, action_dim)

    def noise_draws(self) -> int:
        return 1

    def _distribution(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        hidden = self.net(obs)
        return th.tanh(self.mean(hidden)), self.log_std(hidden).clamp(-5.0, 1.0)

    def loss(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        mean, log_std = self._distribution(obs)
        return (((actions - mean) / log_std.exp()) ** 2 / 2 + log_std).sum(dim=-1).mean()

    def sample(self, obs: th.Tensor, noise: th.Tensor | None = None) -> th.Tensor:
        noise = th.randn(1, obs.shape[0], self.action_dim, device=obs.device) if noise is None else noise
        mean, log_std = self._distribution(obs)
        return (mean + log_std.exp() * noise[0]).clamp(-1.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    th.set_num_threads(1)
    check_action_sampler(GaussianBase(3, 1))  # what EXPO checks too, before training: the reason if it fails
    model = EXPO(
        "MlpPolicy", "Pendulum-v1", learning_starts=200, gradient_steps=2, policy_delay=2, batch_size=128,
        n_critics=5, n_base_samples=4, n_edit_samples=4, compile_mode=None, verbose=1,
        policy_kwargs=dict(base_policy=GaussianBase, net_arch=[64, 64], denoiser_width=64),
    )  # fmt: skip
    model.learn(args.steps, log_interval=5)
    print(f"base: {type(model.base).__name__}, {model.diffusion_steps} network pass per sample")


if __name__ == "__main__":
    main()
