"""The critic: an ensemble of LayerNorm Q-networks evaluated in one batched pass (docs/algorithm.md, "Networks").

SB3's ``ContinuousCritic`` holds its critics in a Python list and runs them one after another; with
EXPO's ten critics scoring sixteen candidates per state that is ten times the kernel launches. Here
every layer stores the weights of all members stacked, ``(E, in, out)``, so one batched matmul
evaluates the whole ensemble. Where only some members are needed (the TD target ranks candidates by a
random subset of the target critics), ``members`` runs just those.
"""

import math
from collections.abc import Callable

import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_expo.backend import ensemble_linear


class EnsembleLinear(nn.Module):
    """
    ``E`` independent linear layers applied in one batched matmul.

    Input ``(B, in)`` (the same rows for every member) or ``(E, B, in)``; output ``(E, B, out)``. With
    ``members`` (``k`` indices), only those members run: input ``(B, in)`` or ``(k, B, in)``, output
    ``(k, B, out)``. Weights are Xavier-uniform per member and biases zero, as in the reference.
    """

    def __init__(self, n_members: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(th.empty(n_members, in_features, out_features))
        self.bias = nn.Parameter(th.zeros(n_members, 1, out_features))
        bound = math.sqrt(6.0 / (in_features + out_features))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: th.Tensor, members: th.Tensor | None = None) -> th.Tensor:
        return ensemble_linear(x, *select_members([self.weight, self.bias], members))


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dimension with a separate scale and shift per ensemble member."""

    def __init__(self, n_members: int, features: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(th.ones(n_members, 1, features))
        self.bias = nn.Parameter(th.zeros(n_members, 1, features))

    def forward(self, x: th.Tensor, members: th.Tensor | None = None) -> th.Tensor:
        weight, bias = select_members([self.weight, self.bias], members)
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * weight + bias


def mlp_layers(
    in_features: int, net_arch: list[int], hidden_layer: Callable[[int, int], list[nn.Module]]
) -> tuple[list[nn.Module], int]:
    """The hidden layers of an MLP, ``hidden_layer(n_in, n_out)`` for each width in turn, and the last width."""
    layers: list[nn.Module] = []
    for width in net_arch:
        layers += hidden_layer(in_features, width)
        in_features = width
    return layers, in_features


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
        layers, in_features = mlp_layers(
            obs_dim + action_dim,
            net_arch,
            lambda n_in, n_out: [EnsembleLinear(n_critics, n_in, n_out), EnsembleLayerNorm(n_critics, n_out), activation_fn()],
        )
        layers.append(EnsembleLinear(n_critics, in_features, 1))
        self.q_networks = nn.Sequential(*layers)

    def forward(self, obs: th.Tensor, actions: th.Tensor, members: th.Tensor | None = None) -> th.Tensor:
        """
        :param obs: observation features ``(..., obs_dim)``
        :param actions: actions ``(..., action_dim)`` with the same leading shape
        :param members: indices ``(k,)`` of the members to run; all of them by default
        :return: Q-values of every member (or of ``members``, in that order), ``(E, ...)`` or ``(k, ...)``
        """
        leading_shape = actions.shape[:-1]
        x = th.cat([obs, actions], dim=-1).reshape(-1, obs.shape[-1] + actions.shape[-1])
        for layer in self.q_networks:
            x = layer(x, members) if isinstance(layer, (EnsembleLinear, EnsembleLayerNorm)) else layer(x)
        return x.reshape(-1, *leading_shape)


def select_members(parameters: list[th.Tensor], members: th.Tensor | None) -> list[th.Tensor]:
    """The rows ``members`` of stacked per-member parameters ``(E, ...)``; all of them when ``members`` is None."""
    return parameters if members is None else [p.index_select(0, members) for p in parameters]


def random_subsets(n_critics: int, subset_size: int, n_draws: int, device: th.device | str = "cpu") -> th.Tensor:
    """
    Draw ``n_draws`` independent random subsets of ``subset_size`` distinct critic indices (REDQ style),
    on the device and without a host sync: the ranks of uniform noise give a random permutation.

    :return: indices ``(n_draws, subset_size)``
    """
    return th.rand(n_draws, n_critics, device=device).argsort(dim=-1)[:, :subset_size]
