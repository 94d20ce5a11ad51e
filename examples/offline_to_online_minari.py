"""Offline-to-online EXPO on a Minari dataset: D4RL AntMaze at the paper's settings (docs/tasks.md).

The base policy is first pretrained by imitation of the dataset, then EXPO fine-tunes online with
every minibatch half offline, half online. Success rate is evaluated every 10k env steps:

    minari download D4RL/antmaze/large-diverse-v1                    # once (pip install "sb3_expo[offline,robotics]")
    python examples/offline_to_online_minari.py --task sb3_expo/AntMaze-large-diverse-v1
    tensorboard --logdir runs/                                       # pretrain/*, rollout/*, train/*, eval/success_rate

At these settings (UTD 20, 10 critics, 500k pretraining steps) this is a GPU workload: about a day on
one GPU for the full 300k env steps. The same run from the command line: `sb3-expo train --env <task>`.
"""

import argparse

import gymnasium as gym
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.monitor import Monitor

from sb3_expo import EXPO
from sb3_expo.tasks import ANTMAZE_TASKS  # importing sb3_expo.tasks registers the task ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sb3_expo/AntMaze-large-diverse-v1", choices=sorted(ANTMAZE_TASKS))
    parser.add_argument("--pretrain-steps", type=int, default=500_000)
    parser.add_argument("--steps", type=int, default=300_000, help="online env steps")
    parser.add_argument("--gradient-steps", type=int, default=20, help="UTD ratio (critic updates per env step)")
    parser.add_argument("--eval-freq", type=int, default=10_000)
    parser.add_argument("--logdir", default="runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = gym.make(args.task)  # the dataset's evaluation maze, ended at the goal, info["is_success"]
    model = EXPO(
        "MultiInputPolicy",  # AntMaze observations are a Dict (observation, achieved_goal, desired_goal)
        env,
        offline_dataset=ANTMAZE_TASKS[args.task],  # a Minari id, reloaded by EXPO.load (never pickled)
        reward_shift=-1.0,  # the paper's AntMaze rewards r - 1, offline and online alike
        edit_scale=0.05,  # small edits: the pretrained base policy is already good
        critic_subset_size=1,
        learning_starts=0,  # no random warm-up after pretraining
        gradient_steps=args.gradient_steps,
        policy_delay=args.gradient_steps,
        tensorboard_log=args.logdir,
        device=args.device,
        seed=args.seed,
        verbose=1,
    )
    model.pretrain(args.pretrain_steps, progress_bar=True)

    evaluation = EvalCallback(
        Monitor(gym.make(args.task)),
        eval_freq=args.eval_freq,
        n_eval_episodes=50,
        deterministic=False,  # the paper evaluates the stochastic on-the-fly policy
        log_path=f"{args.logdir}/evaluations",
        best_model_save_path=f"{args.logdir}/best",
    )
    model.learn(args.steps, callback=evaluation, progress_bar=True)
    model.save(f"{args.logdir}/expo_antmaze")
    model.save_replay_buffer(f"{args.logdir}/expo_antmaze_replay_buffer")  # online data only; see resume_checkpoint.py
    print(f"last success rate {evaluation.evaluations_successes[-1] if evaluation.evaluations_successes else 'n/a'}")


if __name__ == "__main__":
    main()
