"""The vectorised LayerNorm critic ensemble and the random-subset minimum."""

import itertools

import numpy as np
import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_expo.critics import CriticEnsemble, EnsembleLayerNorm, EnsembleLinear, random_subsets


def test_ensemble_equals_independent_layernorm_mlps():
    th.manual_seed(0)
    ensemble = CriticEnsemble(obs_dim=3, action_dim=2, net_arch=[8, 8], n_critics=4)
    with th.no_grad():  # give LayerNorm affine parameters non-trivial values
        for p in ensemble.parameters():
            p.add_(0.1 * th.randn_like(p))
    obs, actions = th.randn(5, 3), th.randn(5, 2)
    q = ensemble(obs, actions)
    assert q.shape == (4, 5)

    linears = [m for m in ensemble.q_networks if isinstance(m, EnsembleLinear)]
    norms = [m for m in ensemble.q_networks if isinstance(m, EnsembleLayerNorm)]
    for member in range(4):
        h = th.cat([obs, actions], dim=1)
        for i, linear in enumerate(linears):
            h = h @ linear.weight[member] + linear.bias[member, 0]
            if i < len(norms):
                ln = norms[i]
                h = F.relu(F.layer_norm(h, (h.shape[-1],), ln.weight[member, 0], ln.bias[member, 0], eps=1e-6))
        th.testing.assert_close(q[member], h.squeeze(-1))


def test_members_are_initialised_independently_with_xavier_and_zero_bias():
    th.manual_seed(0)
    ensemble = CriticEnsemble(obs_dim=30, action_dim=2, net_arch=[64], n_critics=3)
    first = ensemble.q_networks[0]
    assert not th.allclose(first.weight[0], first.weight[1])
    bound = np.sqrt(6 / (32 + 64))
    assert first.weight.abs().max() <= bound
    assert first.weight.abs().max() > 0.9 * bound
    assert th.all(first.bias == 0)


def test_leading_shapes_are_kept():
    ensemble = CriticEnsemble(obs_dim=3, action_dim=2, net_arch=[8], n_critics=5)
    assert ensemble(th.randn(4, 6, 3), th.randn(4, 6, 2)).shape == (5, 4, 6)


def test_random_subsets_are_distinct_uniform_and_independent():
    th.manual_seed(0)
    n_draws = 20_000
    first, second = random_subsets(10, 2, n_draws), random_subsets(10, 2, n_draws)
    assert first.shape == (n_draws, 2)
    assert th.all(first[:, 0] != first[:, 1])
    counts = th.bincount(first.flatten(), minlength=10).float() / (2 * n_draws)
    assert th.allclose(counts, th.full((10,), 0.1), atol=0.01)
    # Independent draws coincide (as sets) with probability 1 / C(10, 2) = 1/45.
    same = (first.sort(dim=1).values == second.sort(dim=1).values).all(dim=1).float().mean().item()
    assert abs(same - 1 / 45) < 0.006
    # Every pair can be drawn.
    pairs = {tuple(p) for p in first.sort(dim=1).values.tolist()}
    assert pairs == set(itertools.combinations(range(10), 2))


def test_members_run_only_the_chosen_critics_in_the_given_order():
    th.manual_seed(0)
    critic = CriticEnsemble(obs_dim=3, action_dim=2, net_arch=[16, 16], n_critics=5)
    obs, actions = th.randn(4, 6, 3), th.randn(4, 6, 2)
    members = th.tensor([3, 0])
    with th.no_grad():
        th.testing.assert_close(critic(obs, actions, members), critic(obs, actions)[members])


def test_relu_is_default_activation():
    assert isinstance(CriticEnsemble(3, 2, [8]).q_networks[2], nn.ReLU)
