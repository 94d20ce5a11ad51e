"""Offline-to-online EXPO on a sparse-reward PointMaze, with a dataset built locally: the README's main job.

1. Builds the mixed-quality PointMaze dataset into $MINARI_DATASETS_PATH (no download; reused if it exists):
   10% of the episodes go to the goal, the rest roam the maze.
2. Pretrains the diffusion base policy on it by imitation. Imitation alone mostly roams, as the data does.
3. Pretrains the critics and the edit actor on the same data (offline EXPO updates), so that the
   on-the-fly action is ranked by fitted critics from the first online step. (``pretrain(n)`` does both
   steps in one call; they are split here to measure imitation alone.)
4. Fine-tunes online with EXPO, every batch half offline data, half online; the base keeps imitating the
   offline data and the online episodes that reached the goal (``base_imitates``, EXPO's default).
5. Prints the success rate at each stage, leaves TensorBoard logs and writes a learning-curve PNG next to
   the model (the success of the online episodes over env steps, with each stage's evaluation).

    python examples/offline_to_online_pointmaze.py          # about 5-8 minutes on 2 CPU cores
    tensorboard --logdir runs/                              # pretrain/* and train/*, rollout/success_rate

Small networks and UTD 2 keep it CPU-sized; benchmarks/README.md has the success of several seeds.
"""

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor

from sb3_expo import EXPO
from sb3_expo.evaluation import BasePolicyActor, evaluate_success_rate
from sb3_expo.tasks.pointmaze import POINTMAZE_DATASET_ID, build_pointmaze_dataset, make_pointmaze_env

# The shipped YAML's sb3_expo/PointMazeUMazeFixed-v0 entry: reward -1 per step until the goal (as the paper
# does on AntMaze), a large edit scale because most of the data goes the wrong way, small nets and UTD 2, and
# target critics that follow 4x faster than the paper's tau 0.005: with ~15k critic updates in all, values must
# propagate over a 130-step path (benchmarks/README.md).
CONFIG = dict(
    tau=0.02,
    offline_ratio=0.5,
    reward_shift=-1.0,
    edit_scale=0.5,
    learning_starts=0,
    batch_size=128,
    gradient_steps=2,
    policy_delay=2,
    n_critics=5,
    n_base_samples=4,
    n_edit_samples=4,
    policy_kwargs=dict(net_arch=[64, 64], denoiser_width=64, denoiser_blocks=2),
)


class EpisodeSuccesses(BaseCallback):
    """
    Records ``(env steps, success)`` at the end of every training episode, from the ``info["is_success"]`` that
    SB3 already has: it draws no random numbers, so the run is the same with it as without.
    """

    def __init__(self) -> None:
        super().__init__()
        self.episodes: list[tuple[int, bool]] = []

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if done and "is_success" in info:
                self.episodes.append((self.num_timesteps, bool(info["is_success"])))
        return True


def plot_learning_curve(
    path: str | Path,
    episodes: Sequence[tuple[int, bool]],
    evaluations: Sequence[tuple[str, int, float]],
    imitation: float,
    window: int = 10,
    title: str = "",
) -> Path:
    """
    Write the demo's learning curve as a PNG: the success of the online fine-tuning episodes over env steps
    (a moving average over ``window`` episodes), the evaluations of the stages at their env step, and the
    success of imitation alone (the pretrained base policy) as a level line.

    :param path: the PNG to write (its folder is created)
    :param episodes: ``(env steps at the episode's end, success)`` of the online episodes (:class:`EpisodeSuccesses`)
    :param evaluations: ``(stage, env steps, success rate)`` of the evaluations
    :param imitation: the success rate of imitation alone
    :param window: episodes in the moving average
    :param title: the plot's title
    :return: the path written
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(7.5, 4.2), layout="constrained")
    axes = figure.subplots()
    axes.axhline(imitation, color="tab:gray", linestyle="--", label=f"imitation alone ({imitation:.2f})")
    if episodes:
        steps, successes = np.array(episodes, dtype=float).T
        average = [successes[max(0, i + 1 - window) : i + 1].mean() for i in range(len(successes))]
        axes.plot(steps, average, color="tab:blue", label=f"online episodes (mean of the last {window})")
    for (stage, step, success_rate), marker in zip(evaluations, "osD^v"):
        axes.plot([step], [success_rate], marker=marker, linestyle="none", markersize=8, label=f"{stage}: {success_rate:.2f}")
    axes.set(xlabel="online env steps", ylabel="success rate", ylim=(-0.05, 1.05), title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.savefig(path, dpi=120)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-steps", type=int, default=3000, help="imitation steps of the base policy")
    parser.add_argument(
        "--critic-pretrain-steps", type=int, default=2000, help="offline UTD blocks of the critics and edit actor"
    )
    parser.add_argument("--online-steps", type=int, default=5000, help="env steps of online fine-tuning")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile-mode", default="auto", help="EXPO's compile_mode ('none': eager)")
    parser.add_argument("--logdir", default="runs", help="TensorBoard log directory")
    parser.add_argument("--save", default="runs/expo_pointmaze.zip", help="where to save the fine-tuned model")
    args = parser.parse_args()
    th.set_num_threads(1)  # on a few shared CPU cores one thread is fastest

    start = time.perf_counter()
    dataset = build_pointmaze_dataset()
    print(f"dataset {POINTMAZE_DATASET_ID}: {dataset.total_episodes} episodes, {dataset.total_steps} transitions")

    model = EXPO(
        "MultiInputPolicy",
        make_pointmaze_env(),
        offline_dataset=POINTMAZE_DATASET_ID,
        tensorboard_log=args.logdir,
        seed=args.seed,
        compile_mode=None if args.compile_mode == "none" else args.compile_mode,
        **CONFIG,
    )
    eval_env = Monitor(make_pointmaze_env())
    eval_env.reset(seed=10_000 + args.seed)
    results = {"untrained": evaluate_success_rate(model, eval_env, args.eval_episodes)}

    model.pretrain(args.pretrain_steps, critic_steps=0, progress_bar=True)  # imitation alone first, to measure it
    imitation = f"imitation alone ({args.pretrain_steps} steps)"
    results[imitation] = evaluate_success_rate(BasePolicyActor(model), eval_env, args.eval_episodes)

    model.pretrain(0, critic_steps=args.critic_pretrain_steps, progress_bar=True)
    offline = f"offline EXPO (+{args.critic_pretrain_steps} critic steps)"
    results[offline] = evaluate_success_rate(model, eval_env, args.eval_episodes)

    online_start = time.perf_counter()
    episodes = EpisodeSuccesses()
    model.learn(args.online_steps, callback=episodes, progress_bar=True)
    online_steps_per_s = args.online_steps / (time.perf_counter() - online_start)
    fine_tuned = f"fine-tuned ({args.online_steps} env steps)"
    results[fine_tuned] = evaluate_success_rate(model, eval_env, args.eval_episodes)

    print(
        f"\nsuccess rate over {args.eval_episodes} episodes (seed {args.seed}, {time.perf_counter() - start:.0f} s; "
        f"online fine-tuning {online_steps_per_s:.1f} env steps/s):"
    )
    for stage, success_rate in results.items():
        print(f"  {stage:<40} {success_rate:.2f}")
    model.save(args.save)
    print(f"model saved to {args.save}; TensorBoard: tensorboard --logdir {args.logdir}")
    evaluations = [(stage, 0, rate) for stage, rate in results.items() if stage not in (imitation, fine_tuned)]
    evaluations.append((fine_tuned, args.online_steps, results[fine_tuned]))
    try:
        plot = plot_learning_curve(
            Path(args.save).with_name(Path(args.save).stem + "_success.png"),
            episodes.episodes,
            evaluations,
            imitation=results[imitation],
            title=f"EXPO offline-to-online on PointMaze (seed {args.seed}; evaluations: {args.eval_episodes} episodes)",
        )
        print(f"learning curve written to {plot}")
    except ImportError:
        print("no learning-curve plot: matplotlib is not installed (pip install matplotlib)")


if __name__ == "__main__":
    main()
