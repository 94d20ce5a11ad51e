"""
Full training with the flow base against the DDPM (T = 10), same run: env steps/s of ``learn()`` on the synthetic env
of ``benchmarks/speed.py`` at one of its configurations, each measurement a fresh process pinned to one thread,
alternating DDPM / flow over rounds. The first ``--warm-up`` env steps (allocation, compilation) are not timed.

    python -m benchmarks.flow_speed --config demo --rounds 3 --steps 600
    python -m benchmarks.flow_speed --config demo --one flow --steps 600     # one measurement (what a round runs)
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch as th

from benchmarks.speed import CONFIGS, fill, make_expo, policy_kwargs

BASES = ("ddpm", "flow")


def measure(config_name: str, base: str, steps: int, warm_up: int, compile_mode: str | None) -> dict:
    """Env steps/s of ``learn(steps)`` after ``learn(warm_up)``, with ``base`` at its default step count."""
    th.set_num_threads(1)
    config = CONFIGS[config_name]
    model = make_expo(
        config, "cpu", compile_mode=compile_mode, diffusion_steps=config["t"] if base == "ddpm" else None,
        policy_kwargs={**policy_kwargs(config), "base_policy": base},
    )  # fmt: skip
    fill(model, 5_000)
    model.learn(warm_up, reset_num_timesteps=False)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    return dict(config=config_name, base=base, steps=model.diffusion_steps, env_steps_per_s=steps / wall, wall_s=wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--warm-up", type=int, default=100)
    parser.add_argument("--compile-mode", default="auto", help='"auto" (the default of EXPO) or "none"')
    parser.add_argument("--one", choices=BASES, help="run one measurement in this process and print it as JSON")
    args = parser.parse_args()
    compile_mode = None if args.compile_mode == "none" else args.compile_mode
    if args.one:
        print(json.dumps(measure(args.config, args.one, args.steps, args.warm_up, compile_mode)), flush=True)
        return
    rows = {base: [] for base in BASES}
    for round_index in range(args.rounds):
        for base in BASES if round_index % 2 == 0 else BASES[::-1]:
            options = ["--steps", str(args.steps), "--warm-up", str(args.warm_up), "--compile-mode", args.compile_mode]
            command = [sys.executable, "-m", "benchmarks.flow_speed", "--config", args.config, "--one", base, *options]
            row = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            rows[base].append(row["env_steps_per_s"])
            print(json.dumps({**row, "round": round_index}), flush=True)
    ddpm, flow = (statistics.median(rows[base]) for base in BASES)
    ratios = [f / d for d, f in zip(rows["ddpm"], rows["flow"], strict=True)]
    print(f"median env steps/s: DDPM {ddpm:.1f}, flow {flow:.1f}: flow / DDPM {flow / ddpm:.2f}x "
          f"(per round {', '.join(f'{ratio:.2f}' for ratio in ratios)})")  # fmt: skip


if __name__ == "__main__":
    main()
