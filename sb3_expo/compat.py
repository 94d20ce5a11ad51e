"""
Every PyTorch entry point that is not public API, in one place, each behind a check and with a plain fallback.

The speed paths (:mod:`sb3_expo.backend`) use a few private pieces of PyTorch: oneDNN's matmul operators, inductor's
mode options, dynamo's configuration, pytree. They can change in any release. Here each one is looked up once, and
where it is missing the caller gets a plain equivalent (or the speed path turns itself off) instead of an
``AttributeError`` deep inside an update. The torch version CI runs is pinned in ``constraints.txt``; the declared floor
in ``pyproject.toml`` is the version tested.
"""

import contextlib
import platform
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch as th

_MKLDNN_OPS = getattr(th.ops, "mkldnn", None)

# oneDNN's fused linear (matmul + bias + pointwise) and its weight packing: x86 CPUs with a oneDNN build of torch.
ONEDNN_AVAILABLE = (
    th.backends.mkldnn.is_available()
    and platform.machine().lower() in ("x86_64", "amd64")
    and hasattr(_MKLDNN_OPS, "_linear_pointwise")
    and hasattr(_MKLDNN_OPS, "_reorder_linear_weight")
)


def onednn_linear_pointwise(rows: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, silu: bool) -> th.Tensor:
    """oneDNN's ``rows @ weight.T + bias``, then SiLU (``"swish"``) fused into the matmul if ``silu``."""
    return _MKLDNN_OPS._linear_pointwise(rows, weight, bias, "swish" if silu else "none", [None], "")


def onednn_pack_weight(weight: th.Tensor, rows: int) -> th.Tensor:
    """``weight`` reordered into oneDNN's blocked layout for matmuls of about ``rows`` rows."""
    return _MKLDNN_OPS._reorder_linear_weight(weight, rows)


def autograd_in_graphs() -> bool:
    """Whether dynamo can trace ``torch.autograd.grad`` into a graph, which EXPO's compiled update steps need."""
    config = getattr(getattr(th, "_dynamo", None), "config", None)
    return hasattr(config, "trace_autograd_ops")


def compile_disabled() -> bool:
    """Whether torch.compile is switched off for the process (``TORCH_COMPILE_DISABLE=1``)."""
    config = getattr(getattr(th, "_dynamo", None), "config", None)
    return bool(getattr(config, "disable", False))


def inductor_mode_options(mode: str) -> dict[str, Any]:
    """The inductor options a ``torch.compile`` mode stands for ({} where inductor does not expose them)."""
    try:
        from torch._inductor import list_mode_options
    except ImportError:
        return {}
    return dict(list_mode_options(mode))


def skip_module_guards() -> Callable[..., Any] | None:
    """Dynamo's guard filter that skips the checks on ``nn.Module`` s, or None where this torch has none."""
    return getattr(th.compiler, "skip_guard_on_all_nn_modules_unsafe", None)


def tree_map(function: Callable[[Any], Any], tree: Any) -> Any:
    """``function`` applied to every leaf of nested tuples, lists and dicts."""
    from torch.utils import _pytree

    return _pytree.tree_map(function, tree)


@contextlib.contextmanager
def tracing_autograd_ops() -> Iterator[None]:
    """
    Inside the block dynamo traces ``torch.autograd.grad`` into graphs. Set and restored by hand: ``config.patch``
    costs more per call, and a compiled step is called thousands of times.
    """
    config = th._dynamo.config
    previous = config.trace_autograd_ops
    config.trace_autograd_ops = True
    try:
        yield
    finally:
        config.trace_autograd_ops = previous


def total_norm(tensors: Sequence[th.Tensor]) -> th.Tensor:
    """The 2-norm of all ``tensors`` together (one fused kernel where ``torch.nn.utils.get_total_norm`` exists)."""
    get_total_norm = getattr(th.nn.utils, "get_total_norm", None)
    if get_total_norm is not None:
        return get_total_norm(tensors)
    return th.linalg.vector_norm(th.stack([th.linalg.vector_norm(tensor) for tensor in tensors]))
