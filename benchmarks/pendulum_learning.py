"""Learning check: online EXPO (no offline data) on Pendulum-v1 with small networks and a reduced UTD.

Prints the evaluation curve (mean return of deterministic episodes vs env steps) per seed, the wall
time, and whether each seed passed the bar (mean evaluation return above -300 within the budget).

    python benchmarks/pendulum_learning.py --seeds 0 1 2 --edit-scale 0.7

Runs on CPU with one torch thread (about 5 minutes per seed on a 2-core machine).
"""

import argparse
import time

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_expo import EXPO, backend

# Small networks for CPU; everything else at the EXPO defaults except the UTD (gradient_steps <= 2).
SMALL_CONFIG = dict(
    learning_starts=1000,
    batch_size=128,
    gradient_steps=2,
    policy_delay=2,
    n_critics=5,
    n_base_samples=4,
    n_edit_samples=4,
    policy_kwargs=dict(net_arch=[64, 64], denoiser_width=64, denoiser_blocks=2),
)
# speed.py's tiny configuration (32-wide networks, batch 32): where compile_mode="auto" compiles the update.
TINY_CONFIG = dict(
    SMALL_CONFIG, batch_size=32, n_critics=3, policy_kwargs=dict(net_arch=[32, 32], denoiser_width=32, denoiser_blocks=1)
)
CONFIGS = {"small": SMALL_CONFIG, "tiny": TINY_CONFIG}


def run_seed(seed: int, edit_scale: float, total_steps: int, eval_every: int, eval_episodes: int, config: dict) -> dict:
    env, eval_env = gym.make("Pendulum-v1"), Monitor(gym.make("Pendulum-v1"))
    eval_env.reset(seed=10_000 + seed)
    model = EXPO("MlpPolicy", env, edit_scale=edit_scale, seed=seed, **config)
    curve = []
    start = time.perf_counter()
    while model.num_timesteps < total_steps:
        model.learn(eval_every, reset_num_timesteps=False)
        mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True)
        curve.append((model.num_timesteps, float(mean_return)))
        print(f"  seed {seed}  step {model.num_timesteps:6d}  eval return {mean_return:8.1f}", flush=True)
    return {"seed": seed, "curve": curve, "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--edit-scale", type=float, default=0.7)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=-300.0)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small", help="network sizes (tiny: speed.py's)")
    parser.add_argument("--compile-mode", default="auto", help="EXPO's compile_mode ('none' for eager)")
    parser.add_argument(
        "--onednn-min-macs", type=int, default=None, help="send layers from this size to oneDNN (0: all; graphs: with grads)"
    )
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.onednn_min_macs is not None:
        backend.options.onednn_min_macs = args.onednn_min_macs

    config = {**CONFIGS[args.config], "compile_mode": None if args.compile_mode == "none" else args.compile_mode}
    print(f"EXPO on Pendulum-v1, edit_scale={args.edit_scale}, config={config}")
    results = [run_seed(seed, args.edit_scale, args.steps, args.eval_every, args.eval_episodes, config) for seed in args.seeds]

    seed_columns = " | ".join(f"seed {r['seed']}" for r in results)
    print(f"\n| steps | {seed_columns} |")
    print(f"|---|{'---|' * len(results)}")
    for i, (steps, _) in enumerate(results[0]["curve"]):
        row = " | ".join(f"{r['curve'][i][1]:.0f}" for r in results)
        print(f"| {steps} | {row} |")
    for r in results:
        returns = np.array([ret for _, ret in r["curve"]])
        reached = [steps for steps, ret in r["curve"] if ret > args.threshold]
        first = reached[0] if reached else None
        print(
            f"seed {r['seed']}: best {returns.max():.0f}, final {returns[-1]:.0f}, first above {args.threshold:.0f} at "
            f"{first} steps, wall {r['wall_s']:.0f} s -> {'PASS' if first is not None else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
