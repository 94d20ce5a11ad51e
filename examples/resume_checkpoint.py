"""Resume EXPO from a checkpoint in a new process, exactly as if training had never stopped.

A checkpoint of sb3_expo.checkpoints.CheckpointCallback is a folder: the model zip (networks, EMA base,
target critics, optimisers, temperature, counters), the replay buffer, state.json + arrays.npz (the torch /
numpy / random generators, the env's generator, the logger's run) and manifest.json (a SHA-256 per file,
checked by resume()). resume() puts all of it back, and the resumed
run computes the same parameters, bit for bit on a CPU, as a run never interrupted
(tests/test_resume.py). Checkpoints are taken at episode ends (every 1000 steps here: Pendulum's
episodes are 200 steps), the newest two kept; offline data is never in them: it is reloaded from its id or path.

    python examples/resume_checkpoint.py              # trains towards 5000 steps and "crashes" after 3100
    python examples/resume_checkpoint.py --resume     # a new process: from the checkpoint at 3000 to 5000
    tensorboard --logdir runs/                        # one continuous run: EXPO_1
"""

import argparse
from pathlib import Path

import gymnasium as gym
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from sb3_expo import EXPO
from sb3_expo.checkpoints import CheckpointCallback, remaining_timesteps, resume

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


class Crash(BaseCallback):
    """Stands for a preemption or a kill: training stops after ``at`` env steps, past the last checkpoint."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def _on_step(self) -> bool:
        return self.num_timesteps < self.at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=5000, help="env steps of the whole run")
    parser.add_argument("--crash-at", type=int, default=3100, help="env steps after which the first process stops")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--logdir", default="runs")
    args = parser.parse_args()
    th.set_num_threads(1)
    checkpoints = CheckpointCallback(1000, Path(args.logdir) / "checkpoints", keep_last=2, verbose=1)

    if not args.resume:
        model = EXPO("MlpPolicy", "Pendulum-v1", tensorboard_log=args.logdir, seed=0, **CPU_SIZED)
        model.learn(args.total, callback=[checkpoints, Crash(args.crash_at)])
        print(f"stopped at {model.num_timesteps} steps; now run: python {__file__} --resume")
        return

    # A new process: the newest checkpoint, a new env made as the first one was, and the rest of the run.
    model = resume(Path(args.logdir) / "checkpoints", gym.make("Pendulum-v1"))
    print(f"resumed at {model.num_timesteps} steps with {model.replay_buffer.size()} transitions in the buffer")
    model.learn(remaining_timesteps(model), callback=checkpoints, reset_num_timesteps=False)
    print(f"trained to {model.num_timesteps} steps; TensorBoard run: {model.logger.get_dir()}")


if __name__ == "__main__":
    main()
