"""The speed paths, behind one seam: how EXPO's inference runs fast without changing its numbers.

Nothing here is part of the algorithm. Every path gives the numbers of the plain PyTorch code up to
floating-point summation order, and the tests hold each one against its plain version
(tests/test_linear.py, tests/test_speed_paths.py, tests/test_diffusion.py).

- **oneDNN layers** (:func:`linear`, :func:`ensemble_linear`, :class:`Linear`). PyTorch computes a float32
  ``F.linear`` or ``matmul`` on a CPU with MKL, which takes an AVX2 code path on AMD processors; oneDNN chooses its
  kernels from the instruction set alone. On the AMD EPYC of our benchmarks oneDNN runs the paper-size denoiser and
  critic layers, their backward matmuls and the critic ensemble's batched ``matmul`` markedly faster
  (benchmarks/README.md has the figures). Used for float32 on an x86 CPU outside autocast,
  for layers of at least :data:`ONEDNN_MIN_MACS` multiply-adds (below that the call costs more than it saves):
  eagerly without autograd (sampling and scoring candidates), and inside compiled graphs with autograd too, as the
  operator :func:`onednn_linear` whose backward is two more oneDNN matmuls (inductor would lower a matmul to MKL's).
  Eager training keeps ``F.linear``. A SiLU that follows a layer is fused into oneDNN's matmul where no gradient
  flows through it (applied to each output tile while it is in cache): the denoiser's residual blocks apply it to
  ``(rows, 4·width)`` activations, where fusing it saves a whole pass over them.
  Inside :func:`packed_weights` (around the TD-target candidates) the eager layers pack each parameter into
  oneDNN's layout once and reuse it.
- **Row chunks** (:func:`in_row_chunks`). On a CPU a sampler denoises at most :data:`CPU_CHUNK_ROWS` rows
  at a time, so the ``(rows, 4·width)`` intermediates of the residual blocks stay in cache. At the paper's
  size (40,960 rows per train() call) this is markedly faster than one pass (benchmarks/README.md).
- **Compilation**: a sampler runs eager or through ``torch.compile`` (:class:`SamplerBinding`), and
  :func:`compile_graph` turns a whole update step (losses, gradients, optimiser step, Polyak), a whole stretch of
  them at small sizes (:func:`compiles_stretch`) or the whole OTF action into one graph.

:func:`configured` switches paths off (or resizes the chunks) inside a ``with`` block: the one seam that
tests and benchmarks use to compare a fast path with its plain version.
"""

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_expo.compat import (
    ONEDNN_AVAILABLE,
    autograd_in_graphs,
    inductor_mode_options,
    onednn_linear_pointwise,
    onednn_pack_weight,
    skip_module_guards,
    tracing_autograd_ops,
    tree_map,
)

# Smallest layer (rows x in x out multiply-adds) sent to oneDNN; tiny CPU configurations stay on F.linear.
ONEDNN_MIN_MACS = 1 << 22

# Rows a CPU sampler denoises at a time (see the module docstring); GPUs take one pass.
CPU_CHUNK_ROWS = 1024

# Sampler layers (multiply-adds on one chunk) from which "auto" leaves the float32 sampler eager (auto_compiles_sampler).
SAMPLER_GRAPH_MAX_MACS = 1 << 26

# Longest stretch of critic steps (policy_delay) that EXPO compiles into one graph with its candidates and policy step.
STRETCH_GRAPH_MAX_STEPS = 2


@dataclasses.dataclass
class Options:
    """
    Which speed paths are on. Change them with :func:`configured`.

    :param onednn: send large float32 CPU layers to oneDNN (where :data:`ONEDNN_AVAILABLE`; see :func:`use_onednn`)
    :param fuse_silu: on the oneDNN path, apply a following SiLU inside the matmul
    :param cpu_chunk_rows: rows a CPU sampler denoises at a time
    :param onednn_min_macs: smallest layer sent to oneDNN, in multiply-adds (:data:`ONEDNN_MIN_MACS`)
    :param prepack_weights: inside :func:`packed_weights`, eager oneDNN layers use their parameters packed once
    """

    onednn: bool = True
    fuse_silu: bool = True
    cpu_chunk_rows: int = CPU_CHUNK_ROWS
    onednn_min_macs: int = ONEDNN_MIN_MACS
    prepack_weights: bool = True


options = Options()


@contextlib.contextmanager
def configured(**changes: Any) -> Iterator[Options]:
    """
    Inside the block, the speed paths run with ``changes`` applied to :data:`options`, e.g.
    ``with configured(onednn=False):`` for plain ``F.linear`` everywhere; restored on exit.

    :param changes: fields of :class:`Options`
    """
    saved = dataclasses.replace(options)
    for name, value in changes.items():
        if not hasattr(options, name):
            raise TypeError(f"unknown backend option {name!r}; options are {[f.name for f in dataclasses.fields(Options)]}")
        setattr(options, name, value)
    try:
        yield options
    finally:
        for field in dataclasses.fields(Options):
            setattr(options, field.name, getattr(saved, field.name))


# ------------------------------------------------------------------------------------------ oneDNN layers


def use_onednn(x: th.Tensor, weight: th.Tensor, macs: int) -> bool:
    """
    Whether :func:`linear` sends ``x @ weight.T`` (``macs`` multiply-adds) to oneDNN: float32 on an x86 CPU, outside
    autocast, at least ``options.onednn_min_macs``, and either without autograd or inside a compiled graph (where
    :func:`onednn_linear`'s backward runs on oneDNN too; eager training keeps ``F.linear`` and its numbers).
    """
    return (
        ONEDNN_AVAILABLE
        and options.onednn
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == th.float32
        and (th.compiler.is_compiling() or not needs_grad(x, weight))
        and not th.is_autocast_enabled("cpu")
        and macs >= options.onednn_min_macs
    )


def needs_grad(*tensors: th.Tensor | None) -> bool:
    """Whether autograd records an op on ``tensors``."""
    return th.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _onednn_matmul(x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, silu: bool) -> th.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    out = onednn_linear_pointwise(rows, weight, bias, silu)
    return out.reshape(*x.shape[:-1], weight.shape[0])


@th.library.custom_op("sb3_expo::onednn_linear", mutates_args=())
def onednn_linear(x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, silu: bool) -> th.Tensor:
    """
    oneDNN's ``x @ weight.T + bias`` (then SiLU if ``silu``, fused into the matmul) as a PyTorch operator, so that
    ``torch.compile`` keeps it as one kernel call in a graph (inductor would otherwise lower a matmul to MKL's,
    which is slower on AMD processors) and autograd has its backward, two more oneDNN matmuls.

    :param x: ``(..., in)``
    :param weight: ``(out, in)``, any strides
    :param bias: ``(out,)`` or None
    :param silu: apply a SiLU inside the matmul (no backward: :func:`linear` fuses it only without autograd)
    """
    return _onednn_matmul(x, weight, bias, silu)


@onednn_linear.register_fake
def _onednn_linear_shape(x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, silu: bool) -> th.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _save_for_backward(ctx: Any, inputs: tuple[Any, ...], output: th.Tensor) -> None:
    x, weight, bias, silu = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias, ctx.silu = bias is not None, silu


def _onednn_linear_backward(ctx: Any, grad: th.Tensor) -> tuple[th.Tensor | None, ...]:
    if ctx.silu:
        raise RuntimeError("onednn_linear(silu=True) has no backward; linear() applies the SiLU separately under autograd")
    x, weight = ctx.saved_tensors
    grad_rows, x_rows = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
    wants_x, wants_weight, wants_bias, _ = ctx.needs_input_grad
    grad_x = onednn_linear(grad, weight.t(), None, False) if wants_x else None  # grad @ weight
    grad_weight = onednn_linear(grad_rows.t(), x_rows.t(), None, False) if wants_weight else None  # grad.T @ x
    grad_bias = grad_rows.sum(0) if wants_bias and ctx.has_bias else None
    return grad_x, grad_weight, grad_bias, None


onednn_linear.register_autograd(_onednn_linear_backward, setup_context=_save_for_backward)


def _linear_on_onednn(x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, silu: bool) -> th.Tensor:
    """
    oneDNN's layer where :func:`use_onednn` chose it: the raw op when eager (no autograd there, and no custom-op
    dispatch), :func:`onednn_linear` inside a graph. A SiLU is fused unless a gradient has to flow through it.
    """
    fused = silu and options.fuse_silu and not needs_grad(x, weight, bias)
    if th.compiler.is_compiling():
        out = onednn_linear(x, weight, bias, fused)
    else:
        out = _onednn_matmul(x, prepacked(weight, x.numel() // x.shape[-1]), bias, fused)
    return F.silu(out) if silu and not fused else out


# Inside packed_weights(): id(parameter) -> (the parameter, kept alive, and its packed copy).
_packed: dict[int, tuple[th.Tensor, th.Tensor]] | None = None


@contextlib.contextmanager
def packed_weights() -> Iterator[None]:
    """
    Inside the block, eager oneDNN layers pack each parameter they use into oneDNN's blocked layout once and reuse
    it (:func:`prepacked`): for a pass in which no weight changes, such as sampling the TD-target candidates (the
    paper-size sampler uses each base weight 400 times per ``train()`` call; the gain is in benchmarks/README.md). The
    packed copies are dropped on exit. A version counter cannot stand in for the block: a compiled optimiser step
    updates the parameters in place without advancing it.
    """
    global _packed
    if _packed is not None:  # nested: the outer block decides
        yield
        return
    _packed = {}
    try:
        yield
    finally:
        _packed = None


def prepacked(weight: th.Tensor, rows: int) -> th.Tensor:
    """
    ``weight`` packed for oneDNN matmuls of about ``rows`` rows, inside :func:`packed_weights` for a parameter (with
    ``options.prepack_weights``); otherwise ``weight`` itself. The numbers are the same either way.
    """
    if _packed is None or not (options.prepack_weights and isinstance(weight, nn.Parameter)):
        return weight
    if id(weight) not in _packed:
        _packed[id(weight)] = (weight, onednn_pack_weight(weight.detach(), rows))
    return _packed[id(weight)][1]


def linear(x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None = None, silu: bool = False) -> th.Tensor:
    """
    ``F.linear(x, weight, bias)``, followed by ``F.silu`` if ``silu``.

    :param weight: ``(out, in)``
    """
    if use_onednn(x, weight, x.numel() * weight.shape[0]):
        return _linear_on_onednn(x, weight, bias, silu)
    out = F.linear(x, weight, bias)
    return F.silu(out) if silu else out


class Linear(nn.Linear):
    """``nn.Linear`` whose forward is :func:`linear`: the same parameters and state-dict keys, oneDNN where it pays."""

    def forward(self, x: th.Tensor) -> th.Tensor:
        return linear(x, self.weight, self.bias)


def ensemble_linear(x: th.Tensor, weight: th.Tensor, bias: th.Tensor) -> th.Tensor:
    """
    ``E`` linear layers at once: ``x @ weight + bias``.

    :param x: ``(B, in)``, the same rows for every member, or ``(E, B, in)``
    :param weight: ``(E, in, out)``
    :param bias: ``(E, 1, out)``
    :return: ``(E, B, out)``
    """
    n_members = weight.shape[0]
    rows_per_member = x.numel() // x.shape[-1] // (n_members if x.dim() == 3 else 1)
    if use_onednn(x, weight, rows_per_member * weight[0].numel()):
        inputs = x.unbind(0) if x.dim() == 3 else [x] * n_members
        return th.stack([_linear_on_onednn(xe, we.t(), be[0], False) for xe, we, be in zip(inputs, weight, bias)])
    return th.matmul(x, weight) + bias


# ------------------------------------------------------------------------------- row chunks, compilation

Sampler = Callable[[th.Tensor, th.Tensor], th.Tensor]


def cpu_chunk_rows() -> int:
    """Rows a CPU sampler denoises at a time: ``options.cpu_chunk_rows`` (:data:`CPU_CHUNK_ROWS` unless :func:`configured`)."""
    return options.cpu_chunk_rows


def in_row_chunks(sampler: Sampler, obs: th.Tensor, noise: th.Tensor) -> th.Tensor:
    """
    ``sampler(obs, noise)``, on a CPU in chunks of ``options.cpu_chunk_rows`` rows. Rows are independent,
    so chunks give the actions of one pass.

    :param sampler: a deterministic sampler, actions ``(B, action_dim)`` from ``obs`` ``(B, obs_dim)``
        and its noise ``(T, B, action_dim)``
    """
    # One pass on GPUs, and inside a compiled graph (it would unroll the chunks: its callers chunk instead).
    chunk = options.cpu_chunk_rows if obs.device.type == "cpu" and not th.compiler.is_compiling() else obs.shape[0]
    if obs.shape[0] <= chunk:
        return sampler(obs, noise)
    return th.cat([sampler(obs[i : i + chunk], noise[:, i : i + chunk]) for i in range(0, obs.shape[0], chunk)])


def auto_compile_mode(device: th.device | str) -> str | None:
    """
    What ``compile_mode="auto"`` chooses for the update steps and the OTF action (for the TD-target candidates:
    :func:`auto_compiles_sampler`), as measured (benchmarks/README.md): ``"default"`` on a CPU, where full training
    ran faster than eager at the tiny, demo and paper sizes (the large layers and their gradients are oneDNN calls
    inside the graphs); eager on GPUs until ``benchmarks/gpu.sh`` has measured them,
    and without a C++ compiler (inductor builds its CPU kernels with one).

    :param device: where the model runs
    """
    cpu = th.device(device).type == "cpu"
    return "default" if cpu and cpp_compiler_available() and autograd_in_graphs() else None


def auto_compiles_sampler(sampler_layer_macs: int, mixed_precision: bool) -> bool:
    """
    Whether ``compile_mode="auto"`` compiles the TD-target candidates too: in bf16, and in float32 below
    :data:`SAMPLER_GRAPH_MAX_MACS` multiply-adds per residual-block layer of one chunk (the demo's 17M: faster
    compiled). Above it (the paper's 268M) the compiled sampler is as fast as the eager one, both bound by
    oneDNN's matmuls, and would only add compilation time (measured in benchmarks/README.md).

    :param sampler_layer_macs: multiply-adds of the sampler's widest layer on one chunk of rows
    :param mixed_precision: whether the sampler runs in bf16 autocast
    """
    return mixed_precision or sampler_layer_macs < SAMPLER_GRAPH_MAX_MACS


def compiles_stretch(policy_delay: int, sampler_layer_macs: int) -> bool:
    """
    Whether EXPO compiles a whole stretch of its update (the TD-target candidates, ``policy_delay`` critic steps and the
    policy step) into one graph instead of one per step: for at most :data:`STRETCH_GRAPH_MAX_STEPS` critic steps (a
    graph unrolls them: each one more lengthens the first compilation), and for layers below
    :data:`ONEDNN_MIN_MACS`, where the update is bound by per-call costs (guards, graph entry) that one call instead
    of four saves. At the demo's size the matmuls bound it: no faster, only a longer compilation (both measured in
    benchmarks/README.md).

    :param policy_delay: critic steps per stretch
    :param sampler_layer_macs: multiply-adds of the sampler's widest layer on all of the stretch's rows
    """
    return policy_delay <= STRETCH_GRAPH_MAX_STEPS and sampler_layer_macs < ONEDNN_MIN_MACS


def cpp_compiler_available() -> bool:
    """Whether inductor can build CPU kernels here: a C++ compiler (``$CXX``, g++, c++ or clang++) on a POSIX system."""
    compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    return os.name == "posix" and any(shutil.which(compiler) for compiler in compilers if compiler)


class CompilationNotice:
    """
    Tells the user, once per model and at the moment it starts, that the first call of its graphs compiles them: the
    progress bar would otherwise sit still with no explanation. Printed when ``verbose >= 1``; the graphs call it.

    :param mode: the ``torch.compile`` mode the graphs use
    :param chosen_by_auto: whether ``compile_mode="auto"`` chose it (the message then says how to opt out)
    :param verbose: the model's verbosity
    :param graphs: which graphs, for the message (what ``"auto"`` decided)
    """

    def __init__(self, mode: str, chosen_by_auto: bool, verbose: int, graphs: str = "the update steps and the action") -> None:
        self.mode, self.chosen_by_auto, self.verbose, self.graphs = mode, chosen_by_auto, verbose, graphs
        self.given = False

    def __call__(self) -> None:
        if self.given:
            return
        self.given = True
        if self.verbose >= 1:
            origin = ' (chosen by compile_mode="auto")' if self.chosen_by_auto else ""
            print(
                f"EXPO: compiling {self.graphs} as torch.compile graphs, mode {self.mode!r}{origin}. "
                "The first call of a new configuration waits for it (up to about a minute on a CPU; seconds once "
                "inductor's disk cache holds the graphs). compile_mode=None runs eager from the first step.",
                flush=True,
            )


def compile_graph(
    step: Callable[..., Any],
    mode: str,
    device: th.device,
    fixed_modules: bool = False,
    notice: Callable[[], None] | None = None,
) -> Callable[..., Any]:
    """
    ``step`` as one ``torch.compile`` graph: an update step of EXPO (losses, ``torch.autograd.grad``, the optimiser
    steps of :class:`sb3_expo.update.GraphAdam`, the Polyak / EMA updates) or the OTF candidates and action (the T
    sampler steps, the edits, the scoring). No graph break (``fullgraph=True``: a break is an error, not a silent
    slowdown). Shapes are static at first; a call with new shapes (a shorter stretch of TD targets, another
    number of envs) compiles one graph with dynamic shapes instead of one per shape (dynamo's automatic dynamic),
    so varying shapes never exhaust dynamo's recompile limit, an error under ``fullgraph``.

    Random draws inside the graph (the samplers' noise, the DDPM loss's noise and time steps, the edit actor's
    samples) go through PyTorch's generator in program order (inductor's ``fallback_random``), so a compiled step
    draws what the eager one draws and the two agree up to floating-point reassociation (tests/test_compiled.py).
    On a CPU the graph's host code is C++ too (inductor's ``cpp_wrapper``): faster calls at small sizes and a
    shorter first compilation (measured in benchmarks/README.md).

    :param step: the eager function; its tensor arguments become graph inputs
    :param mode: a ``torch.compile`` mode ("default", "reduce-overhead", "max-autotune", ...)
    :param device: where the graph runs
    :param fixed_modules: the networks that ``step`` runs keep their structure and attributes (not their weights) and
        have no layer whose output depends on the training mode: the graph does not re-check them at every call
        (dynamo's guards on ``nn.Module`` s; their parameters are still read at each call). At the tiny size the
        guards are a measurable share of a stretch (benchmarks/README.md). A changed module is then not noticed.
    :param notice: called before every call (a :class:`CompilationNotice` speaks at the first one, which compiles)
    """
    options = {**inductor_mode_options(mode), "fallback_random": True, "cpp_wrapper": th.device(device).type == "cpu"}
    if fixed_modules and skip_module_guards() is not None:
        options["guard_filter_fn"] = skip_module_guards()
    compiled = th.compile(step, fullgraph=True, dynamic=None, options=options)
    if options.get("triton.cudagraphs"):  # CUDA graphs reuse their output memory at the next replay: keep copies
        replay = compiled
        compiled = lambda *args, **kwargs: tree_map(th.clone, replay(*args, **kwargs))  # noqa: E731

    def compiled_step(*args: Any, **kwargs: Any) -> Any:
        if notice is not None:
            notice()
        with tracing_autograd_ops():
            return compiled(*args, **kwargs)

    return compiled_step
