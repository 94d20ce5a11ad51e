"""
The compiled update (``compile_mode``): one graph per stretch of critic steps with its candidates and policy step
(short ``policy_delay``), else one graph per critic step, per policy step and for the candidates; one for the action.

A compiled update must give the eager numbers (up to floating-point reassociation), never recompile once warm,
keep the NaN guard, and share its optimiser state with the eager path (so ``save``/``load`` and switching
between the two see one optimiser).
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY_POLICY_KWARGS
from stable_baselines3.common.logger import configure
from test_speed_paths import fill_buffer

from sb3_expo import EXPO
from sb3_expo.acceleration import CandidatesGraph, GraphAdam
from sb3_expo.backend import ONEDNN_MIN_MACS, configured
from sb3_expo.data import OfflineTransitions
from sb3_expo.update import TrainMetrics

pytestmark = pytest.mark.usefixtures("compiling")


@pytest.mark.parametrize(
    ("optimizer_class", "weight_decay"), [(th.optim.Adam, 0.0), (th.optim.Adam, 0.01), (th.optim.AdamW, 1e-4)]
)
def test_graph_adam_takes_the_optimizers_own_step(optimizer_class, weight_decay):
    th.manual_seed(0)
    params = [th.nn.Parameter(th.randn(3, 4)), th.nn.Parameter(th.randn(4))]
    twins = [th.nn.Parameter(p.detach().clone()) for p in params]
    reference = optimizer_class(params, lr=1e-2, weight_decay=weight_decay, fused=True)
    graph_optimizer = optimizer_class(twins, lr=1e-2, weight_decay=weight_decay, fused=True)
    GraphAdam.attach(graph_optimizer)
    for _ in range(3):
        grads = [th.randn_like(p) for p in params]
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad.clone()
        reference.step()
        graph_optimizer.graph_adam.step(tuple(grads), th.tensor(True))
    for param, twin in zip(params, twins, strict=True):
        th.testing.assert_close(twin, param, rtol=1e-6, atol=1e-7)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            th.testing.assert_close(graph_optimizer.state[twin][key], reference.state[param][key], rtol=1e-6, atol=1e-7)
    # The learning rate is read from the tensor that set_learning_rate keeps in step.
    assert graph_optimizer.graph_adam.lr.item() == pytest.approx(1e-2)


def test_graph_adam_leaves_everything_as_it_was_when_the_loss_is_not_finite():
    param = th.nn.Parameter(th.randn(5))
    optimizer = th.optim.Adam([param], lr=0.1, fused=True)
    GraphAdam.attach(optimizer)
    optimizer.graph_adam.step((th.randn(5),), th.tensor(True))
    before = [param.detach().clone(), *(optimizer.state[param][key].clone() for key in ("exp_avg", "exp_avg_sq", "step"))]
    optimizer.graph_adam.step((th.full((5,), float("nan")),), th.tensor(False))
    after = [param, *(optimizer.state[param][key] for key in ("exp_avg", "exp_avg_sq", "step"))]
    for old, new in zip(before, after, strict=True):
        th.testing.assert_close(new.detach(), old, rtol=0, atol=0)


@pytest.mark.parametrize("optimizer", [{"optimizer_class": th.optim.SGD}, {"optimizer_kwargs": {"amsgrad": True}}])
def test_compiled_update_refuses_optimisers_it_cannot_step(tiny_kwargs, optimizer):
    tiny_kwargs["policy_kwargs"].update(optimizer)
    with pytest.raises(ValueError, match="compile_mode=None"):
        EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "compile_mode": "default"})


def train_and_act(tiny_kwargs, compile_mode, n_graphs=2):
    tiny_kwargs = {**tiny_kwargs, "compile_mode": compile_mode}
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs, policy_lr_decay_steps=50, seed=0)
    graphs_before = th._dynamo.utils.counters["stats"]["unique_graphs"]
    fill_buffer(model, 200)
    model.set_logger(configure(None, []))
    th.manual_seed(1)
    model.train(gradient_steps=2, batch_size=16)  # compiles here (the first call of each graph)
    with th._dynamo.config.patch(error_on_recompile=True):  # the learning rates decay: new values, same graphs
        for _ in range(3):
            model.train(gradient_steps=2, batch_size=16)
        action = model.predict(np.zeros(3, dtype=np.float32), deterministic=True)[0]
        model.predict(np.ones(3, dtype=np.float32), deterministic=True)
        np.testing.assert_array_equal(model.predict(np.zeros(3, dtype=np.float32), deterministic=True)[0], action)
    # Compiled: the stretch (or the TD-target candidates, a critic step, a policy step) and the deterministic action.
    assert th._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before == (0 if compile_mode is None else n_graphs)
    optimizer_states = {
        name: getattr(model, name).optimizer.state_dict()["state"] for name in ("critic", "base", "edit_actor")
    }
    return model, model.policy.state_dict(), optimizer_states, action


@pytest.mark.parametrize(
    ("onednn_min_macs", "compile_mode", "n_graphs"),
    [
        pytest.param(ONEDNN_MIN_MACS, "default", 2, marks=pytest.mark.slow),  # a graph per stretch, one for the action
        (ONEDNN_MIN_MACS, "per step", 4),  # the candidates, a critic step, a policy step, the action
        pytest.param(0, "default", 2, marks=pytest.mark.slow),
        (0, "eager sampler", 3),  # "auto" at the paper's sizes: the candidates eager (prepacked weights) between graphs
    ],
)
def test_compiled_update_equals_eager_without_recompiling(
    tiny_kwargs, tmp_path, monkeypatch, onednn_min_macs, compile_mode, n_graphs
):
    """
    Same seed, same data: critic steps, policy steps (random draws included) and the action agree with eager, run as
    one graph per stretch or (a stretch longer than ``STRETCH_GRAPH_MAX_STEPS``) one per step, or with the candidates
    sampled eagerly between the graphs' optimiser steps. With every layer sent to oneDNN (``onednn_min_macs=0``) the
    graphs' layers and their gradients are oneDNN calls, and eager training keeps F.linear: still the same numbers.
    """
    th._dynamo.reset()  # graphs of the other parametrisations are guarded on the threshold: start afresh
    if compile_mode == "per step":
        monkeypatch.setattr("sb3_expo.backend.STRETCH_GRAPH_MAX_STEPS", 1)
    if compile_mode == "eager sampler":
        monkeypatch.setattr("sb3_expo.backend.SAMPLER_GRAPH_MAX_MACS", 0)
    with configured(onednn_min_macs=onednn_min_macs):
        _, eager, eager_states, eager_action = train_and_act(tiny_kwargs, None)
        mode = "auto" if compile_mode == "eager sampler" else "default"
        model, compiled, compiled_states, compiled_action = train_and_act(tiny_kwargs, mode, n_graphs)
    for name, value in eager.items():
        th.testing.assert_close(compiled[name], value, rtol=1e-4, atol=1e-5, msg=name)
    for network, states in eager_states.items():
        for index, state in states.items():
            for key, value in state.items():
                th.testing.assert_close(compiled_states[network][index][key], value, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(compiled_action, eager_action, atol=1e-5)
    assert model.base.optimizer.graph_adam.lr.item() == pytest.approx(model.base.optimizer.param_groups[0]["lr"])

    # The compiled steps are rebuilt on load, and a NaN batch is still skipped inside the graph.
    model.save(tmp_path / "compiled.zip")
    loaded = EXPO.load(tmp_path / "compiled.zip", env=gym.make("Pendulum-v1"))
    assert loaded.compile_mode == mode
    fill_buffer(loaded, 50)
    loaded.set_logger(configure(None, []))
    loaded.replay_buffer.rewards[:] = np.nan
    critics = {name: value.clone() for name, value in loaded.critic.state_dict().items()}
    with pytest.raises(FloatingPointError, match="critic_loss became nan"):
        loaded.train(gradient_steps=2, batch_size=16)
    for name, value in loaded.critic.state_dict().items():
        th.testing.assert_close(value, critics[name], rtol=0, atol=0)


DEMO_SIZE = {"policy_kwargs": dict(net_arch=[64, 64], denoiser_width=64, denoiser_blocks=2), "batch_size": 128}


PAPER_SIZE = {"policy_kwargs": dict(net_arch=[64], denoiser_width=256, denoiser_blocks=1), "batch_size": 256}


@pytest.mark.parametrize(
    ("overrides", "expected", "sampler_compiled", "stretch_compiled"),
    [
        ({}, "default", True, True),  # tiny networks on a CPU: every piece is bound by per-op overhead
        (DEMO_SIZE, "default", True, False),  # larger layers, oneDNN calls inside the graphs; bound by the matmuls
        ({"policy_delay": 3, "gradient_steps": 3}, "default", True, False),  # a stretch graph would unroll 3 steps
        ({"policy_kwargs": dict(TINY_POLICY_KWARGS, edit_dropout=0.1)}, "default", True, False),  # mode switches
        (PAPER_SIZE, "default", False, False),  # the paper's sampler layers: as fast eager, so not worth compiling
        ({**PAPER_SIZE, "mixed_precision": True}, "default", True, False),  # bf16 graphs call oneDNN's bf16 kernels
        ({"policy_kwargs": dict(net_arch=[16, 16], denoiser_width=16, optimizer_class=th.optim.RMSprop)}, None, False, False),
        ({"compile_mode": None}, None, False, False),
        ({**PAPER_SIZE, "compile_mode": "max-autotune"}, "max-autotune", True, False),  # an explicit mode compiles all
    ],
)
def test_auto_compiles_where_it_was_measured_faster(tiny_kwargs, overrides, expected, sampler_compiled, stretch_compiled):
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "compile_mode": "auto", **overrides})
    assert model.resolved_compile_mode == expected
    compiled = expected is not None
    assert (model.steps.critic_step != model._critic_step) == compiled
    assert (model.policy.otf_action.select != model.policy.select_action) == compiled
    assert isinstance(model.steps.candidates, CandidatesGraph) == sampler_compiled
    assert (model.steps.stretch != model._stretch) == stretch_compiled


@pytest.mark.slow  # compiles the stretch and step graphs of two configurations
def test_stretches_cut_by_a_blocks_end_run_on_the_step_graphs(tiny_kwargs):
    """
    With ``train(3)`` and ``policy_delay=2`` every other stretch is cut by a block's end: the whole stretches run as
    one graph, the cut ones on the per-step graphs, and the numbers are eager's, with no recompilation once warm, and
    after a change of batch size.
    """
    models = {}
    for compile_mode in (None, "default"):
        model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "compile_mode": compile_mode}, seed=0)
        fill_buffer(model, 200)
        model.set_logger(configure(None, []))
        th.manual_seed(1)
        graphs_before = th._dynamo.utils.counters["stats"]["unique_graphs"]
        model.train(gradient_steps=3, batch_size=16)  # a whole stretch, then the first step of the next one
        model.train(gradient_steps=3, batch_size=16)  # its second step (a policy update), then a whole stretch
        with th._dynamo.config.patch(error_on_recompile=True):
            for _ in range(2):
                model.train(gradient_steps=3, batch_size=16)
        # Compiled: the stretch; the candidates of one step, a critic step and a policy step.
        assert th._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before == (4 if compile_mode else 0)
        assert model._n_updates == 12 and model._n_policy_updates == 6
        # The stretch graph skips the guards on its networks, not those on its inputs: a new batch size, a new graph.
        model.train(gradient_steps=2, batch_size=8)
        assert th._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before == (5 if compile_mode else 0)
        models[compile_mode] = model
    for name, value in models[None].policy.state_dict().items():
        th.testing.assert_close(models["default"].policy.state_dict()[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_train_metrics_are_read_with_one_host_copy():
    metrics = TrainMetrics()
    metrics.add({"critic_loss": th.tensor(1.0), "q_mean": th.tensor(4.0)})
    metrics.add({"critic_loss": th.tensor(3.0), "q_mean": th.tensor(2.0)})
    metrics.add({"base_loss": th.tensor(0.5)})
    read = metrics.read(ent_coef=th.tensor([0.25]))
    assert read == {"critic_loss": 2.0, "q_mean": 3.0, "base_loss": 0.5, "ent_coef": 0.25}


def test_auto_stays_eager_without_a_cpp_compiler(tiny_kwargs, monkeypatch):
    monkeypatch.setattr("sb3_expo.backend.shutil.which", lambda name: None)
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "compile_mode": "auto"})
    assert model.resolved_compile_mode is None


def test_new_shapes_compile_one_dynamic_graph_instead_of_failing(tiny_kwargs):
    """More batch sizes than dynamo's recompile limit (8): one static and one dynamic-shape graph, no error."""
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "compile_mode": "default"}, seed=0)
    graphs_before = th._dynamo.utils.counters["stats"]["unique_graphs"]
    for n_envs in range(1, 11):
        actions, _ = model.predict(np.zeros((n_envs, 3), dtype=np.float32))
        assert actions.shape == (n_envs, 1)
    assert th._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before == 2


def test_candidates_graph_runs_on_chunks_of_states_with_the_eager_numbers(tiny_kwargs):
    """
    A long stretch of TD targets is sampled by one chunk-sized graph called per chunk of states (a graph of the whole
    stretch would unroll every chunk and take minutes to compile at the paper's UTD 20), with the eager candidates.
    """
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "compile_mode": "default"}, seed=0)
    policy = model.policy
    obs = th.randn(50, 3)
    with th.no_grad(), configured(cpu_chunk_rows=10 * policy.n_base_samples):  # 10 states a chunk: 5 graph calls
        graphs_before = th._dynamo.utils.counters["stats"]["unique_graphs"]
        th.manual_seed(1)
        chunked = model.steps.candidates(obs, policy.base)
        assert th._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before == 1
        th.manual_seed(1)
        eager = policy.propose_candidates(obs, policy.base)
    th.testing.assert_close(chunked, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # compiles a whole stretch
def test_compiled_update_with_imitation_rows_equals_eager(tiny_kwargs):
    """The base's own imitation rows (offline data and successful episodes) enter the stretch graph as inputs."""
    rng = np.random.default_rng(0)
    data = OfflineTransitions(
        rng.normal(size=(64, 3)), rng.uniform(-2, 2, size=(64, 1)), rng.normal(size=64), rng.normal(size=(64, 3)),
        np.zeros(64),
    )  # fmt: skip
    results = []
    for compile_mode in (None, "default"):
        model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "compile_mode": compile_mode}, offline_dataset=data, seed=0)
        fill_buffer(model, 100)
        model.replay_buffer.successful[:40] = True
        model.set_logger(configure(None, []))
        th.manual_seed(1)
        for _ in range(3):
            model.train(gradient_steps=2, batch_size=16)
        results.append(model.policy.state_dict())
    for name, value in results[0].items():
        th.testing.assert_close(results[1][name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_no_callable_is_rebound_on_an_instance(tiny_kwargs):
    """
    Go-to-definition works on the hot path: a compiled model keeps its graphs in its two seams (``model.steps``,
    ``model.policy.otf_action``) and its optimisers' ``graph_adam``; no model, policy, network, optimiser or buffer
    holds a function of its own in place of a method (SB3's ``lr_schedule`` is a value, a function of the progress).
    """
    model = EXPO("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "compile_mode": "default"})
    assert model.resolved_compile_mode == "default"
    optimizers = [model.critic.optimizer, model.base.optimizer, model.edit_actor.optimizer, model.ent_coef_optimizer]
    objects = [model, model.policy, *model.policy.modules(), *optimizers, model.replay_buffer]
    rebound = [
        f"{type(obj).__name__}.{name}"
        for obj in objects
        for name, value in vars(obj).items()
        if callable(value) and not isinstance(value, (th.nn.Module, type, th.Tensor)) and name != "lr_schedule"
    ]
    assert not rebound, rebound
    assert not callable(model.steps) and not callable(model.policy.otf_action)
