"""EXPO against the authors' JAX learner, measured in one run: alternating rounds of fresh processes on one core.

The authors' learner is not part of this project. Its timing harness lives outside the repository (a copy of
the authors' unmodified ``expo/`` package with ``bench_jax.py`` and a ``setup.sh`` that builds its virtual
environment: jax 0.4.13 CPU, flax 0.7.2, optax 0.1.5). This script runs that harness's ``bench_jax.py`` cells and
this project's own cells (``python benchmarks/reference.py cell ...``: sb3_expo's EXPO eager / compiled / bf16 and
SB3's SAC with the same critic ensemble) in alternation, each a fresh process pinned to one core, then prints the
medians and the ratios to the authors' code::

    dst=$(mktemp -d) && cp -r path/to/expo-jax/. "$dst" && bash "$dst/setup.sh"
    python benchmarks/reference.py run --harness "$dst" --rounds 3 --core 1 --out /tmp/reference.jsonl
    python benchmarks/reference.py report /tmp/reference.jsonl [--rounds r1,r2]

Cells (synthetic batches with AntMaze's sizes, observation 29, action 8; the harness's configurations):

- ``paper``: 3x256 critics, 10 critics, min over 1, N = K = 8, T = 10, batch 256, denoiser 256 x 3 blocks, UTD 1;
- ``tiny``: 2x32 critics, 3 critics, min over 2, N = K = 4, T = 10, batch 32, denoiser 32 x 1 block, UTD 2.

Each of our cells fills a replay buffer with 10,000 random transitions, calls ``train(utd, batch)`` once (the first
call, compilation included, is reported apart), three more times untimed, then times ``train`` and ``predict``
(one observation) as ``bench_jax.py`` times ``update`` and ``sample_actions``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from speed import CONFIGS as SPEED_CONFIGS

# speed.py's configurations as the harness runs them: the paper's at UTD 1 with AntMaze's min over 1 critic.
CONFIGS = {"paper": {**SPEED_CONFIGS["paper"], "utd": 1, "subset": 1}, "tiny": {**SPEED_CONFIGS["tiny"], "subset": 2}}
JAX_CONFIG_NAMES = {"paper": "paper", "tiny": "tinyh32"}  # bench_jax.py's names for the same cells
# Our implementations: (compile_mode, mixed_precision); "sac" is SB3's SAC with EXPO's critic ensemble size.
IMPLEMENTATIONS = {
    "expo": (None, False),
    "expo_compiled": ("default", False),
    "expo_bf16": (None, True),
    "expo_bf16_compiled": ("default", True),
    "expo_auto": ("auto", False),  # the default: what compile_mode="auto" picks for the cell
    "expo_bf16_auto": ("auto", True),
    "sac": None,
}
TIMED = {"paper": (10, 50), "tiny": (30, 100)}  # timed train() calls, timed predict() calls


def run_cell(impl: str, config_name: str, tag: str, out: Path) -> None:
    """One cell in this process: time ``train`` and ``predict`` and append a JSON line to ``out``."""
    import numpy as np
    import torch as th

    th.set_num_threads(1)
    th.set_num_interop_threads(1)
    from speed import OBS_DIM, fill, make_expo, make_sac

    config = CONFIGS[config_name]
    utd, batch_size = config["utd"], config["batch_size"]
    start = time.perf_counter()
    if impl == "sac":
        model = make_sac(config, "cpu")
    else:
        compile_mode, mixed_precision = IMPLEMENTATIONS[impl]
        model = make_expo(
            config, "cpu", critic_subset_size=config["subset"], edit_scale=0.05, mixed_precision=mixed_precision,
            compile_mode=compile_mode,
        )  # fmt: skip
    create_s = time.perf_counter() - start
    fill(model, 10_000)
    n_train, n_predict = TIMED[config_name]
    train_first, train_times = timed_calls(lambda: model.train(utd, batch_size), n_train)
    obs = np.random.default_rng(1).normal(size=(OBS_DIM,)).astype(np.float32)
    predict_first, predict_times = timed_calls(lambda: model.predict(obs), n_predict, warmup=4)
    record = dict(
        impl=impl, cfg=config_name, tag=tag, create_s=create_s, train_first_s=train_first, update_s=train_times,
        update_med=statistics.median(train_times), sample_first_s=predict_first, sample_s=predict_times,
        sample_med=statistics.median(predict_times), loadavg=os.getloadavg()[0], torch=th.__version__,
    )  # fmt: skip
    with open(out, "a") as file:
        file.write(json.dumps(record) + "\n")


def timed_calls(fn, n: int, warmup: int = 3) -> tuple[float, list[float]]:
    """The first call's time, then ``n`` timed calls after ``warmup`` untimed ones."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, times


def run_rounds(args: argparse.Namespace) -> None:
    """Alternate the cells, each a fresh pinned process; JAX cells append to the harness's results, copied to ``out``."""
    harness, out = Path(args.harness).resolve(), Path(args.out).resolve()
    jax_python = harness / "venv" / "bin" / "python"
    cells = []
    for config_name in args.configs.split(","):
        cells.append(("jax", config_name))
        cells += [(impl, config_name) for impl in args.impls.split(",")]
    for round_index in range(args.rounds):
        tag = f"r{round_index}"
        for impl, config_name in cells if round_index % 2 == 0 else cells[::-1]:
            pin = ["taskset", "-c", str(args.core)]
            if impl == "jax":
                n_timed, n_sample = TIMED[config_name]
                command = [*pin, str(jax_python), str(harness / "bench_jax.py"), JAX_CONFIG_NAMES[config_name],
                           str(CONFIGS[config_name]["utd"]), str(n_timed), str(n_sample), tag]  # fmt: skip
            else:
                command = [*pin, sys.executable, __file__, "cell", impl, config_name, tag, str(out)]
            start = time.time()
            process = subprocess.run(command, capture_output=True, text=True)
            print(f"{tag} {impl} {config_name} rc={process.returncode} {time.time() - start:.0f}s", flush=True)
            if process.returncode:
                print(process.stderr[-3000:], flush=True)
            elif impl == "jax":
                last = (harness / "results.jsonl").read_text().splitlines()[-1]
                record = json.loads(last)
                record.update(impl="jax", cfg=config_name)
                with open(out, "a") as file:
                    file.write(json.dumps(record) + "\n")


def report(args: argparse.Namespace) -> None:
    """Pooled medians per cell and their ratios to the authors' JAX in the same rounds, as a markdown table."""
    records = [json.loads(line) for line in open(args.results)]
    if args.rounds:
        records = [r for r in records if r["tag"] in args.rounds.split(",")]
    cells: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        cells.setdefault((record["impl"], record["cfg"]), []).append(record)
    print(f"rounds: {sorted({r['tag'] for r in records})}\n")
    print("| cell | implementation | update (median) | / JAX | action (median) | / JAX | first train() |")
    print("|---|---|---|---|---|---|---|")
    for (impl, config_name), rows in sorted(cells.items(), key=lambda item: (item[0][1], item[0][0] != "jax", item[0][0])):
        update = statistics.median(t for r in rows for t in r["update_s"])
        action = statistics.median(t for r in rows for t in r["sample_s"])
        jax_rows = cells.get(("jax", config_name), [])
        jax_update = statistics.median(t for r in jax_rows for t in r["update_s"]) if jax_rows else float("nan")
        jax_action = statistics.median(t for r in jax_rows for t in r["sample_s"]) if jax_rows else float("nan")
        first = [r.get("train_first_s", sum(r.get("warmup_s", [])[:3])) for r in rows]
        print(
            f"| {config_name} | {impl} | {update * 1e3:.2f} ms | {update / jax_update:.2f}x | {action * 1e3:.2f} ms | "
            f"{action / jax_action:.2f}x | {min(first):.1f}-{max(first):.1f} s |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="alternating rounds of all cells")
    run.add_argument("--harness", required=True, help="a writable copy of the JAX harness, after its setup.sh")
    run.add_argument("--rounds", type=int, default=3)
    run.add_argument("--core", type=int, default=1)
    run.add_argument("--configs", default="tiny,paper")
    run.add_argument("--impls", default="expo,expo_compiled,expo_bf16,sac")
    run.add_argument("--out", default="reference.jsonl")
    cell = commands.add_parser("cell", help="one of our cells (used by run)")
    cell.add_argument("impl", choices=sorted(IMPLEMENTATIONS))
    cell.add_argument("cfg", choices=sorted(CONFIGS))
    cell.add_argument("tag")
    cell.add_argument("out")
    summary = commands.add_parser("report", help="medians and ratios to JAX")
    summary.add_argument("results")
    summary.add_argument("--rounds", default=None, help="comma-separated round tags to keep (quiet rounds)")
    args = parser.parse_args()
    if args.command == "run":
        run_rounds(args)
    elif args.command == "cell":
        run_cell(args.impl, args.cfg, args.tag, Path(args.out))
    else:
        report(args)


if __name__ == "__main__":
    main()
