"""
The package's layout, read from its source (nothing is imported): the import graph is a DAG with the
algorithm on top, the data loaders sit below the tasks and envs, and functions stay short.
"""

import ast
import importlib
import io
import re
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sb3_expo"
MAX_FUNCTION_LINES = 50


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """The sb3_expo modules ``name`` imports anywhere in its source (lazy imports inside functions too)."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from sb3_expo.tasks import pointmaze`
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imported_modules(name) for name in MODULES}


def reachable(name: str) -> set[str]:
    seen, stack = set(), [name]
    while stack:
        for child in GRAPH[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def test_the_graph_sees_the_known_edges():
    assert "sb3_expo.data" in GRAPH["sb3_expo.expo"]
    assert "sb3_expo.tasks.pointmaze" in GRAPH["sb3_expo.tasks"]
    assert "sb3_expo.data.minari" in GRAPH["sb3_expo.tasks.recording"]


def test_data_loaders_import_no_tasks_envs_or_algorithm():
    above = ("sb3_expo.tasks", "sb3_expo.envs", "sb3_expo.expo", "sb3_expo.policies", "sb3_expo.rlpd", "sb3_expo.zoo")
    for name in MODULES:
        if name == "sb3_expo.data" or name.startswith("sb3_expo.data."):
            bad = sorted(module for module in reachable(name) if module.startswith(above))
            assert not bad, f"{name} reaches {bad}"


def test_critics_and_diffusion_never_import_each_other():
    assert "sb3_expo.diffusion" not in reachable("sb3_expo.critics")
    assert "sb3_expo.critics" not in reachable("sb3_expo.diffusion")


def test_import_graph_is_acyclic():
    for name in MODULES:
        assert name not in reachable(name), f"{name} imports itself back through {sorted(reachable(name))}"


def test_algorithm_is_on_top():
    """
    Nothing below the algorithms (loaders, tasks, networks, buffers) imports them; only what drives them does:
    the package root, checkpoints (resume() loads an EXPO by default) and the zoo command.
    """
    algorithms = {"sb3_expo.expo", "sb3_expo.rlpd"}
    above = {"sb3_expo", "sb3_expo.checkpoints"}
    below = [name for name in MODULES if name not in above | algorithms and not name.startswith("sb3_expo.zoo")]
    for name in below:
        assert not GRAPH[name] & algorithms, f"{name} imports {sorted(GRAPH[name] & algorithms)}"


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """From the first line after the signature (the docstring) to the last line."""
    return node.end_lineno - node.body[0].lineno + 1  # type: ignore[operator]


def long_functions(name: str) -> list[str]:
    tree = ast.parse(MODULES[name].read_text())
    return [
        f"{name}.{node.name} ({body_lines(node)} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and body_lines(node) > MAX_FUNCTION_LINES
    ]


def test_no_function_is_over_50_lines():
    """
    Counted from the docstring to the last line. The signature is left out: SB3's constructors list one
    parameter per line (EXPO's has 40), and squeezing them would not make the function any shorter to read.
    """
    too_long = [line for name in sorted(MODULES) for line in long_functions(name)]
    assert not too_long


def test_entry_points_stored_in_old_datasets_still_resolve():
    """Datasets built before the tasks moved name ``sb3_expo.envs:create_pointmaze`` and ``sb3_expo.tasks:...``."""
    from gymnasium.envs.registration import load_env_creator

    from sb3_expo.tasks.adroit import make_adroit_binary_env
    from sb3_expo.tasks.fetchpush import create_fetchpush
    from sb3_expo.tasks.pointmaze import create_pointmaze

    assert load_env_creator("sb3_expo.envs:create_pointmaze") is create_pointmaze
    assert load_env_creator("sb3_expo.envs:create_fetchpush") is create_fetchpush
    assert load_env_creator("sb3_expo.tasks:make_adroit_binary_env") is make_adroit_binary_env
    envs = importlib.import_module("sb3_expo.envs")
    assert envs.IsSuccessInfo.__module__ == envs.TerminateOnSuccess.__module__ == "sb3_expo.envs"
    with pytest.raises(AttributeError):
        envs.no_such_name  # noqa: B018


TIME_FIGURE = re.compile(r"\d(?:\.\d+)?\s?(?:µs|us|ns|ms|s|sec|seconds?|min|minutes?|hours?)\b")


def docstrings_and_comments(path: Path) -> list[tuple[int, str]]:
    """Every docstring and comment of a module, with its line number."""
    text = path.read_text()
    found = [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                found.append((node.body[0].lineno, docstring))
    return found


def test_no_timing_lives_in_the_librarys_docstrings_or_comments():
    """Measured times go stale in code: they live in benchmarks/ results and the docs quote them with a date."""
    figures = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {match.group()}"
        for path in MODULES.values()
        for line, text in docstrings_and_comments(path)
        for match in TIME_FIGURE.finditer(text)
    ]
    assert not figures, figures


def test_private_pytorch_lives_in_the_compatibility_module_only():
    """dynamo's config, inductor, oneDNN's private operators and pytree can change in any release: one module wraps them."""
    private = re.compile(r"_dynamo|_inductor|ops\.mkldnn|_pytree|skip_guard_on_all_nn_modules_unsafe|get_total_norm")
    found = [
        f"{name}:{number}"
        for name, path in MODULES.items()
        if name != "sb3_expo.compat"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert not found, found


# The modules of EXPO's update and action, from train() down to the losses and the samplers.
ALGORITHM_MODULES = ("expo", "update", "policies", "offline", "critics", "diffusion")
SPEED_DISPATCH = (
    "is_compiling", "compile_graph", "auto_compile_mode", "compiles_stretch", "_run_critic_step", "packed_weights",
    "cpu_chunk_rows", "SamplerBinding", "class GraphAdam", "th.compile(", "torch.compile(",
)  # fmt: skip


@pytest.mark.parametrize("module", ALGORITHM_MODULES)
def test_the_update_holds_no_speed_dispatch(module):
    """EXPO's update and action are plain PyTorch: which piece runs as a graph is decided in sb3_expo/acceleration.py alone."""
    code = [line.split("#")[0] for line in MODULES[f"sb3_expo.{module}"].read_text().splitlines()]
    found = [f"{number}: {word}" for number, line in enumerate(code, 1) for word in SPEED_DISPATCH if word in line]
    assert not found, found


def test_the_expo_class_stays_short():
    """A maintainer reads EXPO next to SB3's SAC (about 340 lines): its class, docstring included, stays within 350."""
    tree = ast.parse(MODULES["sb3_expo.expo"].read_text())
    (expo,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "EXPO"]
    assert expo.end_lineno - expo.lineno + 1 <= 350
