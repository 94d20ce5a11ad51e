"""Resume EXPO from a checkpoint together with its replay buffer, as if training had never stopped.

A checkpoint is the model zip (networks, EMA base, target critics, optimisers, temperature) plus the
replay buffer file; offline data is never in either: EXPO.load reloads it from its id or path.

    python examples/resume_checkpoint.py              # 3000 steps, stop, resume for 2000 more (a few minutes on CPU)
    tensorboard --logdir runs/                        # one continuous run: EXPO_1
"""

import argparse
from pathlib import Path

import gymnasium as gym
import torch as th
from stable_baselines3.common.callbacks import CheckpointCallback

from sb3_expo import EXPO

CPU_SIZED = dict(
    learning_starts=1000,
    batch_size=128,
    gradient_steps=2,
    policy_delay=2,
    n_critics=5,
    n_base_samples=4,
    n_edit_samples=4,
    policy_kwargs=dict(net_arch=[64, 64], denoiser_width=64, denoiser_blocks=2),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="env steps before the 'interruption'")
    parser.add_argument("--more", type=int, default=2000, help="env steps after resuming")
    parser.add_argument("--logdir", default="runs")
    args = parser.parse_args()
    th.set_num_threads(1)
    checkpoints = Path(args.logdir) / "checkpoints"

    # First run: a checkpoint (model and replay buffer) every 1000 steps.
    model = EXPO("MlpPolicy", "Pendulum-v1", tensorboard_log=args.logdir, seed=0, **CPU_SIZED)
    save = CheckpointCallback(1000, str(checkpoints), name_prefix="expo", save_replay_buffer=True)
    model.learn(args.steps, callback=save)
    del model

    # Later: load the last checkpoint and its replay buffer, and go on counting steps from there.
    last = max(int(path.stem.split("_")[1]) for path in checkpoints.glob("expo_*_steps.zip"))
    model = EXPO.load(checkpoints / f"expo_{last}_steps.zip", env=gym.make("Pendulum-v1"))
    model.load_replay_buffer(checkpoints / f"expo_replay_buffer_{last}_steps.pkl")
    print(f"resumed at {model.num_timesteps} steps with {model.replay_buffer.size()} transitions in the buffer")
    model.learn(args.more, callback=save, reset_num_timesteps=False, tb_log_name="EXPO")
    print(f"trained to {model.num_timesteps} steps; checkpoints in {checkpoints}")


if __name__ == "__main__":
    main()
