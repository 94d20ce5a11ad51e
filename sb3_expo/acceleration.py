"""
Speed applied to EXPO's update from one place.

EXPO writes its update once, in plain PyTorch: the TD-target candidates, a critic step, a policy step, a base step and
a stretch of them (the critic steps up to the next policy update, then that update; ``sb3_expo/expo.py``), and its
policy the OTF action (``sb3_expo/policies.py``). This module decides once, when the model is set up, which of those
pieces run as ``torch.compile`` graphs, and gives each its seam: the training loop calls :class:`UpdateSteps`, the
policy's ``predict`` its :class:`~sb3_expo.policies.OTFAction`, and a compiled update steps its optimisers with
:class:`GraphAdam`. EXPO and its policy hold no mode heuristics and rebind none of their methods. ``"auto"`` compiles
where it was measured faster (``benchmarks/README.md``); how the graphs are built is :func:`sb3_expo.backend.compile_graph`.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch as th
from torch.optim.adam import adam

from sb3_expo.backend import (
    CompilationNotice,
    auto_compile_mode,
    auto_compiles_sampler,
    compile_graph,
    compiles_stretch,
    cpu_chunk_rows,
    packed_weights,
)
from sb3_expo.compat import compile_disabled
from sb3_expo.policies import CandidateNoise, OTFAction


@dataclass
class UpdateSteps:
    """
    What EXPO's training loop calls for each piece of its update: the plain method, or that method as a graph.

    :param candidates: the OTF candidates of the TD targets, ``(next_obs, base) -> (B, N + K, action_dim)``
        (``ExpoPolicy.propose_candidates``, its weights prepacked while it samples: none changes meanwhile)
    :param critic_step: one critic step (``EXPO._critic_step``)
    :param policy_step: one policy update (``EXPO._policy_step``)
    :param base_step: one imitation step of the base (``EXPO._base_step``; pretraining)
    :param stretch: a stretch of critic steps and its policy update (``EXPO._stretch``); as one graph where
        :func:`compiles_whole_stretch` says so, for stretches of ``policy_delay`` steps (the shorter ones at the ends of
        a ``train()`` call run step by step)
    """

    candidates: Callable[[th.Tensor, th.nn.Module], th.Tensor]
    critic_step: Callable[..., dict[str, th.Tensor]]
    policy_step: Callable[..., dict[str, th.Tensor]]
    base_step: Callable[..., dict[str, th.Tensor]]
    stretch: Callable[..., list[dict[str, th.Tensor]]]

    @classmethod
    def plain(cls, model: Any) -> "UpdateSteps":
        """The model's own methods: what eager training runs, and what a graph of a whole stretch traces."""
        return cls(
            with_packed_weights(model.policy.propose_candidates), model._critic_step, model._policy_step,
            model._base_step, model._stretch,
        )  # fmt: skip


def with_packed_weights(propose: Callable[..., th.Tensor]) -> Callable[..., th.Tensor]:
    """``propose`` with every eager oneDNN layer's weight packed once per call (:func:`sb3_expo.backend.packed_weights`)."""

    def candidates(*args: Any) -> th.Tensor:
        with packed_weights():
            return propose(*args)

    return candidates


class CandidatesGraph:
    """
    The TD-target candidates as a graph, on a CPU called on chunks of states of at most
    :func:`~sb3_expo.backend.cpu_chunk_rows` sampler rows, with the noise drawn for the whole batch first: the
    candidates of one call. A graph unrolls its loops, so one graph of a whole stretch (40 chunks of denoising at the
    paper's UTD 20) took far longer to compile than the graph of one chunk, which is all it needs.
    """

    def __init__(self, policy: Any, mode: str, notice: CompilationNotice) -> None:
        self.policy = policy
        self.graph = compile_graph(policy.propose_candidates, mode, policy.device, notice=notice)

    def __call__(self, obs_features: th.Tensor, base: th.nn.Module) -> th.Tensor:
        policy, batch_size = self.policy, obs_features.shape[0]
        noise: CandidateNoise = policy.candidate_noise(batch_size)
        states = max(1, cpu_chunk_rows() // policy.n_base_samples)
        if obs_features.device.type != "cpu" or batch_size <= states:
            return self.graph(obs_features, base, False, noise)
        n, k = policy.n_base_samples, policy.n_edit_samples
        chunks = range(0, batch_size, states)
        return th.cat([self.graph(obs_features[i : i + states], base, False, noise.rows(i, i + states, n, k)) for i in chunks])


class StretchGraph:
    """A whole stretch as one graph (the plain steps traced inside), for stretches of ``policy_delay`` critic steps."""

    def __init__(self, model: Any, mode: str, notice: CompilationNotice) -> None:
        plain = UpdateSteps.plain(model)

        def whole_stretch(*args: Any) -> list[dict[str, th.Tensor]]:
            return model._stretch(*args, steps=plain)

        # Without dropout nothing in the networks depends on the training mode, and EXPO never restructures them.
        self.graph = compile_graph(whole_stretch, mode, model.device, fixed_modules=True, notice=notice)
        self.step_by_step, self.policy_delay = model._stretch, model.policy_delay

    def __call__(self, stretch: Any, n_steps: int, *args: Any) -> list[dict[str, th.Tensor]]:
        run = self.graph if n_steps == self.policy_delay else self.step_by_step
        return run(stretch, n_steps, *args)


def accelerate(model: Any) -> tuple[str | None, UpdateSteps]:
    """
    Decide how the model's update and action run, and bind them: the plain methods, or (``compile_mode``) each one as a
    compiled graph, the OTF candidates and action too (:meth:`sb3_expo.policies.ExpoPolicy.compile_graphs`), and a
    whole stretch as one graph where :func:`compiles_whole_stretch` says so.

    :param model: an EXPO model whose networks and optimisers are built
    :return: the ``torch.compile`` mode chosen (None: eager) and the steps the training loop calls
    """
    optimizers = [model.critic.optimizer, model.base.optimizer, model.edit_actor.optimizer, model.ent_coef_optimizer]
    optimizers = [optimizer for optimizer in optimizers if optimizer is not None]
    mode = choose_compile_mode(model.compile_mode, optimizers, model.device)
    if mode is None:
        if model.compile_mode == "auto" and model.verbose >= 1:
            print(f'EXPO: compile_mode="auto" runs eager here ({model.device.type}: docs/performance.md says why)')
        return None, UpdateSteps.plain(model)
    for optimizer in optimizers:
        GraphAdam.attach(optimizer)
    sampler, stretch = compiles_candidates(model), compiles_whole_stretch(model)
    graphs = "the critic and policy steps" + (", a whole stretch of them" if stretch else "")
    graphs += ", the TD-target candidates" if sampler else " (the TD-target candidates stay eager)"
    notice = CompilationNotice(mode, model.compile_mode == "auto", model.verbose, graphs + " and the action")
    model.policy.otf_action = OTFAction(compile_graph(model.policy.select_action, mode, model.device, notice=notice))
    plain = UpdateSteps.plain(model)
    steps = UpdateSteps(
        candidates=CandidatesGraph(model.policy, mode, notice) if sampler else plain.candidates,
        critic_step=compile_graph(model._critic_step, mode, model.device, notice=notice),
        policy_step=compile_graph(model._policy_step, mode, model.device, notice=notice),
        base_step=compile_graph(model._base_step, mode, model.device, notice=notice),
        stretch=StretchGraph(model, mode, notice) if stretch else plain.stretch,
    )
    return mode, steps


def choose_compile_mode(compile_mode: str | None, optimizers: list[th.optim.Optimizer], device: th.device) -> str | None:
    """``compile_mode``, or for ``"auto"`` the measured choice of :func:`sb3_expo.backend.auto_compile_mode`."""
    if compile_disabled():  # TORCH_COMPILE_DISABLE=1: torch.compile is off, EXPO runs eager
        return None
    if compile_mode != "auto":
        return compile_mode
    if not all(GraphAdam.supports(optimizer) for optimizer in optimizers):
        return None
    return auto_compile_mode(device)


def compiles_candidates(model: Any) -> bool:
    """Whether the TD-target candidates are a graph too: always with an explicit mode; ``"auto"`` decides by size."""
    if model.compile_mode != "auto":
        return True
    chunk_rows = min(cpu_chunk_rows(), stretch_sampler_rows(model))
    return auto_compiles_sampler(sampler_layer_macs(model, chunk_rows), model.mixed_precision)


def compiles_whole_stretch(model: Any) -> bool:
    """
    Whether a whole stretch (candidates, ``policy_delay`` critic steps, the policy step) is one graph, called once
    instead of ``policy_delay + 2`` times: when the candidates are compiled, without dropout (its training-mode switches
    stay outside graphs), and as :func:`~sb3_expo.backend.compiles_stretch` decides.
    """
    return (
        compiles_candidates(model)
        and not model.policy.uses_dropout
        and compiles_stretch(model.policy_delay, sampler_layer_macs(model, stretch_sampler_rows(model)))
    )


def stretch_sampler_rows(model: Any) -> int:
    """Rows the sampler denoises for a stretch's TD targets: ``N`` per state of ``policy_delay`` minibatches."""
    return model.batch_size * model.policy_delay * model.n_base_samples


def sampler_layer_macs(model: Any, rows: int) -> int:
    """Multiply-adds of the denoiser's widest layer (width → 4·width) on ``rows`` rows."""
    width = model.policy.denoiser_width
    return rows * width * 4 * width


class GraphAdam:
    """
    The step of an Adam / AdamW optimiser as traceable tensor code, for a compiled update: PyTorch's functional
    ``adam`` (the math of ``optimizer.step()``) on the optimiser's own state, so eager and compiled updates
    interchange and ``save`` / ``load`` see one optimiser. ``optimizer.graph_adam`` once attached (:meth:`attach`).

    Inside a graph nothing may change per call but tensor values (any Python number read there is baked in and
    guarded): the parameter list and the hyperparameters are read here once, and the learning rate is a tensor,
    which :func:`set_learning_rate` keeps equal to the optimiser's.
    """

    def __init__(self, optimizer: th.optim.Adam):
        (group,) = optimizer.param_groups
        self.optimizer = optimizer
        self.params: list[th.Tensor] = list(group["params"])
        self.lr = th.tensor(float(group["lr"]), device=self.params[0].device)
        self.hyperparameters = dict(
            beta1=group["betas"][0], beta2=group["betas"][1], weight_decay=group["weight_decay"], eps=group["eps"],
            decoupled_weight_decay=group.get("decoupled_weight_decay", isinstance(optimizer, th.optim.AdamW)),
        )  # fmt: skip
        for param in self.params:  # Adam's state as its first step creates it, so the graph always finds one
            if not optimizer.state[param]:
                optimizer.state[param].update(
                    step=th.zeros((), dtype=th.float32, device=param.device),
                    exp_avg=th.zeros_like(param, memory_format=th.preserve_format),
                    exp_avg_sq=th.zeros_like(param, memory_format=th.preserve_format),
                )

    @staticmethod
    def supports(optimizer: th.optim.Optimizer) -> bool:
        """Whether a graph step can stand for ``optimizer``: Adam or AdamW, one parameter group, no amsgrad / maximize."""
        groups = optimizer.param_groups
        return (
            isinstance(optimizer, th.optim.Adam) and len(groups) == 1 and not (groups[0]["amsgrad"] or groups[0]["maximize"])
        )

    @staticmethod
    def attach(optimizer: th.optim.Optimizer) -> None:
        """Give ``optimizer`` its graph step, or refuse an optimiser it cannot stand for, with the reason."""
        if not GraphAdam.supports(optimizer):
            raise ValueError(
                f"A compiled update (compile_mode) steps Adam and AdamW optimisers with one parameter group and without "
                f"amsgrad or maximize, got {optimizer!r}: use compile_mode=None with other optimisers"
            )
        optimizer.graph_adam = GraphAdam(optimizer)  # type: ignore[attr-defined]

    def step(self, grads: tuple[th.Tensor, ...], ok: th.Tensor) -> None:
        """One Adam step with ``grads``; where ``ok`` is false (a NaN or inf loss) everything is put back as it was."""
        with th.no_grad():
            states = [self.optimizer.state[param] for param in self.params]
            tensors = [self.params, *([state[key] for state in states] for key in ("exp_avg", "exp_avg_sq", "step"))]
            before = [[tensor.clone() for tensor in kind] for kind in tensors]
            adam(
                self.params, list(grads), tensors[1], tensors[2], [], tensors[3], foreach=False,
                capturable=th.compiler.is_compiling(),  # no host reads in a graph; eager (the tests) reads the step
                amsgrad=False, maximize=False, lr=self.lr, **self.hyperparameters,
            )  # fmt: skip
            for kind, saved in zip(tensors, before, strict=True):
                for tensor, old in zip(kind, saved, strict=True):
                    tensor.copy_(th.where(ok, tensor, old))
