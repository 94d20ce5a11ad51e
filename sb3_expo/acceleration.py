"""
Speed applied to EXPO's update from one place.

EXPO writes its update once, in plain PyTorch: a critic step, a policy step, a base step and a stretch of them (the
critic steps up to the next policy update, then that update; ``sb3_expo/expo.py``). This module decides once, when the
model is set up, which of those pieces run as ``torch.compile`` graphs, and gives the training loop what to call for
each (:class:`UpdateSteps`): EXPO itself holds no mode heuristics and rebinds none of its methods. ``"auto"`` compiles
where it was measured faster (``benchmarks/README.md``); how the graphs are built is :func:`sb3_expo.backend.compile_graph`.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch as th

from sb3_expo.backend import (
    CompilationNotice,
    auto_compile_mode,
    auto_compiles_sampler,
    compile_graph,
    compiles_stretch,
    cpu_chunk_rows,
)
from sb3_expo.compat import compile_disabled
from sb3_expo.update import GraphAdam


@dataclass
class UpdateSteps:
    """
    What EXPO's training loop calls for each piece of its update: the plain method, or that method as a graph.

    :param critic_step: one critic step (``EXPO._critic_step``)
    :param policy_step: one policy update (``EXPO._policy_step``)
    :param base_step: one imitation step of the base (``EXPO._base_step``; pretraining)
    :param stretch: a stretch of critic steps and its policy update (``EXPO._stretch``); as one graph where
        :func:`compiles_whole_stretch` says so, for stretches of ``policy_delay`` steps (the shorter ones at the ends of
        a ``train()`` call run step by step)
    """

    critic_step: Callable[..., dict[str, th.Tensor]]
    policy_step: Callable[..., dict[str, th.Tensor]]
    base_step: Callable[..., dict[str, th.Tensor]]
    stretch: Callable[..., list[dict[str, th.Tensor]]]

    @classmethod
    def plain(cls, model: Any) -> "UpdateSteps":
        """The model's own methods: what eager training runs, and what a graph of a whole stretch traces."""
        return cls(model._critic_step, model._policy_step, model._base_step, model._stretch)


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
    model.policy.compile_graphs(mode, candidates=sampler, notice=notice)
    steps = UpdateSteps(
        critic_step=compile_graph(model._critic_step, mode, model.device, notice=notice),
        policy_step=compile_graph(model._policy_step, mode, model.device, notice=notice),
        base_step=compile_graph(model._base_step, mode, model.device, notice=notice),
        stretch=StretchGraph(model, mode, notice) if stretch else model._stretch,
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
