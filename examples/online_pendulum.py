"""Online EXPO from scratch (no offline data) on Pendulum-v1, the README's main job.

Trains with small networks and a reduced UTD so it finishes in minutes on a CPU, evaluates the
policy before and after training, and writes TensorBoard logs:

    python examples/online_pendulum.py                 # 20k env steps, about 5-10 minutes on 2 CPU cores
    tensorboard --logdir runs/                         # training curves under EXPO_1/

On a GPU, drop the size overrides to train at the paper's settings (UTD 20, 3x256 networks).
"""

import argparse
import time

import gymnasium as gym
import torch as th
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_expo import EXPO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000, help="env steps to train for")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default="runs", help="TensorBoard log directory")
    parser.add_argument("--save", default="runs/expo_pendulum.zip", help="where to save the trained model")
    args = parser.parse_args()
    th.set_num_threads(1)  # on a few shared CPU cores one thread is fastest

    model = EXPO(
        "MlpPolicy",
        "Pendulum-v1",
        learning_starts=1000,
        batch_size=128,
        gradient_steps=2,  # the paper uses UTD 20; 2 keeps a CPU run short
        policy_delay=2,
        n_critics=5,
        n_base_samples=4,
        n_edit_samples=4,
        policy_kwargs=dict(net_arch=[64, 64], denoiser_width=64, denoiser_blocks=2),
        tensorboard_log=args.logdir,
        seed=args.seed,
        verbose=0,
    )
    eval_env = Monitor(gym.make("Pendulum-v1"))
    eval_env.reset(seed=args.seed + 1000)

    before, before_std = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    print(f"before training: mean return {before:.1f} +/- {before_std:.1f} over 10 episodes")
    start = time.perf_counter()
    model.learn(args.steps, progress_bar=True)
    wall = time.perf_counter() - start
    after, after_std = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    print(f"after {args.steps} env steps ({wall:.0f} s on {model.device}): mean return {after:.1f} +/- {after_std:.1f}")
    model.save(args.save)
    print(f"model saved to {args.save}; TensorBoard: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
