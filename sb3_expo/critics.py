"""The critic: an ensemble of LayerNorm Q-networks evaluated in one batched pass (ALGORITHM.md §1-2).

SB3's ``ContinuousCritic`` holds its critics in a Python list and runs them one after another; with
EXPO's ten critics scoring sixteen candidates per state that is ten times the kernel launches. Here
every layer stores the weights of all members stacked, ``(E, in, out)``, so one batched matmul
evaluates the whole ensemble.
"""

import math

import torch as th
from torch import nn
from torch.nn import functional as F


class EnsembleLinear(nn.Module):
    """
    ``E`` independent linear layers applied in one batched matmul.

    Input ``(B, in)`` (the same rows for every member) or ``(E, B, in)``; output ``(E, B, out)``.
    Weights are Xavier-uniform per member and biases zero, as in the reference.
    """

    def __init__(self, n_members: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(th.empty(n_members, in_features, out_features))
        self.bias = nn.Parameter(th.zeros(n_members, 1, out_features))
        bound = math.sqrt(6.0 / (in_features + out_features))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return th.matmul(x, self.weight) + self.bias


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dimension with a separate scale and shift per ensemble member."""

    def __init__(self, n_members: int, features: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(th.ones(n_members, 1, features))
        self.bias = nn.Parameter(th.zeros(n_members, 1, features))

    def forward(self, x: th.Tensor) -> th.Tensor:
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


class CriticEnsemble(nn.Module):
    """
    ``E`` Q-networks ``concat[s, a] → (Linear → LayerNorm → ReLU) × L → Linear 1``.

    :param obs_dim: size of the observation features
    :param action_dim: size of the action
    :param net_arch: hidden layer sizes
    :param n_critics: ensemble size E
    :param activation_fn: activation after each LayerNorm
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        net_arch: list[int],
        n_critics: int = 10,
        activation_fn: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.n_critics = n_critics
        layers: list[nn.Module] = []
        in_features = obs_dim + action_dim
        for width in net_arch:
            layers += [EnsembleLinear(n_critics, in_features, width), EnsembleLayerNorm(n_critics, width), activation_fn()]
            in_features = width
        layers.append(EnsembleLinear(n_critics, in_features, 1))
        self.q_networks = nn.Sequential(*layers)

    def forward(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """
        :param obs: observation features ``(..., obs_dim)``
        :param actions: actions ``(..., action_dim)`` with the same leading shape
        :return: Q-values of every member, ``(E, ...)``
        """
        leading_shape = actions.shape[:-1]
        x = th.cat([obs, actions], dim=-1).reshape(-1, obs.shape[-1] + actions.shape[-1])
        return self.q_networks(x).reshape(self.n_critics, *leading_shape)


def random_subsets(n_critics: int, subset_size: int, n_draws: int, device: th.device | str = "cpu") -> th.Tensor:
    """
    Draw ``n_draws`` independent random subsets of ``subset_size`` distinct critic indices (REDQ style),
    on the device and without a host sync: the ranks of uniform noise give a random permutation.

    :return: indices ``(n_draws, subset_size)``
    """
    return th.rand(n_draws, n_critics, device=device).argsort(dim=-1)[:, :subset_size]


def subset_min(q_values: th.Tensor, subset: th.Tensor) -> th.Tensor:
    """
    Minimum over the members in ``subset`` of an ensemble's Q-values.

    :param q_values: ``(E, ...)``
    :param subset: member indices ``(k,)``
    :return: ``(...)``
    """
    return q_values.index_select(0, subset).min(dim=0).values
