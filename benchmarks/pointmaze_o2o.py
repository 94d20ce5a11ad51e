"""Offline-to-online learning check on the PointMaze demo task: EXPO vs SB3's SAC on the same offline data.

Both algorithms get the locally built mixed-quality dataset (``sb3_expo.data.pointmaze``) mixed 50/50
into every batch (RLPD's symmetric sampling, ``OfflineReplayBuffer``), reward -1 per step, the same
critic size and UTD. EXPO also pretrains its diffusion base policy on the data first; SAC has no
imitation step, so its "pretrained" row is its untrained policy. Prints the success rate after
pretraining and at each checkpoint of online steps, per seed, as a markdown table.

    python benchmarks/pointmaze_o2o.py --seeds 0 1 2                 # about 10 minutes per seed on 1 core
    python benchmarks/pointmaze_o2o.py --algos expo --mixed-precision  # EXPO with the bf16 sampler

Runs on CPU with one torch thread; pass --algos expo or sac to run one of them.
"""

import argparse
import os
import time

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.monitor import Monitor

from sb3_expo import EXPO
from sb3_expo.buffers import DictOfflineReplayBuffer
from sb3_expo.data import RewardTransform, load_minari
from sb3_expo.data.pointmaze import POINTMAZE_DATASET_ID, build_pointmaze_dataset
from sb3_expo.envs import make_pointmaze_env
from sb3_expo.evaluation import evaluate_success_rate

PRETRAIN_STEPS = 3000
REWARD_SHIFT = -1.0
SHARED = dict(learning_starts=0, batch_size=128, gradient_steps=2, policy_kwargs=dict(net_arch=[64, 64]))
# EXPO as in examples/offline_to_online_pointmaze.py (the shipped YAML's entry for this task).
EXPO_CONFIG = dict(
    offline_dataset=POINTMAZE_DATASET_ID,
    reward_shift=REWARD_SHIFT,
    edit_scale=0.5,
    policy_delay=2,
    n_critics=5,
    n_base_samples=4,
    n_edit_samples=4,
)


def make_model(algo: str, seed: int, mixed_precision: bool = False):
    env = make_pointmaze_env()
    if algo == "expo":
        policy_kwargs = dict(SHARED["policy_kwargs"], denoiser_width=64, denoiser_blocks=2)
        model = EXPO(
            "MultiInputPolicy",
            env,
            seed=seed,
            mixed_precision=mixed_precision,
            **{**SHARED, "policy_kwargs": policy_kwargs},
            **EXPO_CONFIG,
        )
        model.pretrain(PRETRAIN_STEPS)
        return model
    model = SAC(
        "MultiInputPolicy",
        env,
        seed=seed,
        replay_buffer_class=DictOfflineReplayBuffer,
        replay_buffer_kwargs=dict(offline_ratio=0.5, reward_transform=RewardTransform(shift=REWARD_SHIFT)),
        **SHARED,
    )
    model.replay_buffer.attach_offline(load_minari(POINTMAZE_DATASET_ID))
    return model


def run(algo: str, seed: int, checkpoints: list[int], eval_episodes: int, mixed_precision: bool) -> dict:
    start = time.perf_counter()
    model = make_model(algo, seed, mixed_precision)
    eval_env = Monitor(make_pointmaze_env())
    eval_env.reset(seed=10_000 + seed)
    curve = {0: evaluate_success_rate(model, eval_env, eval_episodes)}
    for steps in checkpoints:
        model.learn(steps - model.num_timesteps, reset_num_timesteps=False)
        curve[steps] = evaluate_success_rate(model, eval_env, eval_episodes)
        print(f"  {algo} seed {seed} step {steps:5d} success {curve[steps]:.2f}", flush=True)
    return {"algo": algo, "seed": seed, "curve": curve, "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=["expo", "sac"], choices=["expo", "sac"])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[1000, 2000, 3000, 4000, 5000])
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--mixed-precision", action="store_true", help="EXPO samples in bfloat16 (mixed_precision=True)")
    args = parser.parse_args()
    th.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    build_pointmaze_dataset()

    results = [
        run(algo, seed, args.checkpoints, args.eval_episodes, args.mixed_precision)
        for algo in args.algos
        for seed in args.seeds
    ]
    columns = ["after pretraining", *(f"{steps} steps" for steps in args.checkpoints)]
    print(f"\nsuccess rate over {args.eval_episodes} episodes\n")
    print(f"| algo | seed | {' | '.join(columns)} | wall (s) |")
    print(f"|---|---|{'---|' * len(columns)}---|")
    for result in results:
        values = " | ".join(f"{value:.2f}" for value in result["curve"].values())
        print(f"| {result['algo']} | {result['seed']} | {values} | {result['wall_s']:.0f} |")
    for algo in args.algos:
        curves = np.array([list(r["curve"].values()) for r in results if r["algo"] == algo])
        means = " | ".join(f"{value:.2f}" for value in curves.mean(axis=0))
        print(f"| {algo} | mean | {means} | |")


if __name__ == "__main__":
    main()
