"""EXPO on a robomimic (or MimicGen) low-dim file: the data, the env recorded in it, and training.

    # the low-dim "ph" datasets, e.g. with robomimic's scripts/download_datasets.py, then:
    pip install "sb3_expo[offline,robomimic]"      # robosuite; MimicGen tasks also need MimicGen from source:
    git clone https://github.com/NVlabs/mimicgen && pip install -e mimicgen   # (PyPI's "mimicgen" is not it)
    python examples/robomimic_file.py --task sb3_expo/RobomimicSquare-v0 --dataset square/ph/low_dim_v141.hdf5

Without robosuite the script still loads the file and prints what it holds, then stops with the
install command. Training at the paper's settings (UTD 20) is a GPU workload.
"""

import argparse

import gymnasium as gym
import numpy as np

from sb3_expo import EXPO
from sb3_expo.data import load_robomimic_hdf5
from sb3_expo.tasks import ROBOMIMIC_OBS_KEYS, ROBOMIMIC_TASKS, read_robomimic_env_meta

# The paper's settings (docs/tasks.md): beta, pretraining steps (offline-to-online), env steps.
SETTINGS = {
    "sb3_expo/RobomimicLift-v0": (0.05, 0, 500_000),
    "sb3_expo/RobomimicCan-v0": (0.05, 0, 1_000_000),
    "sb3_expo/RobomimicSquare-v0": (0.1, 200_000, 1_000_000),
    "sb3_expo/MimicGenThreading-v0": (0.05, 500_000, 1_000_000),
    "sb3_expo/MimicGenStack-v0": (0.05, 0, 1_000_000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sb3_expo/RobomimicSquare-v0", choices=sorted(ROBOMIMIC_TASKS))
    parser.add_argument("--dataset", required=True, help="robomimic-format low-dim .hdf5 file")
    parser.add_argument("--logdir", default="runs")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    # The offline data: one flat observation per step, ROBOMIMIC_OBS_KEYS concatenated in that order.
    data = load_robomimic_hdf5(args.dataset, obs_keys=list(ROBOMIMIC_OBS_KEYS))
    meta = read_robomimic_env_meta(args.dataset)
    print(
        f"{args.dataset}: {len(data)} transitions of {meta['env_name']}, observations {data.observations.shape[1:]}, "
        f"actions {data.actions.shape[1:]}, {int(data.terminals.sum())} terminal steps, "
        f"mean reward {np.mean(data.rewards):.3f}"
    )

    # The env the file was recorded in (robosuite; the error names the pip extra when it is missing).
    env = gym.make(args.task, dataset_path=args.dataset)
    edit_scale, pretrain_steps, steps = SETTINGS[args.task]
    model = EXPO(
        "MlpPolicy",
        env,
        offline_dataset=args.dataset,  # the path is saved with the model and reloaded by EXPO.load
        offline_dataset_kwargs=dict(obs_keys=list(ROBOMIMIC_OBS_KEYS)),  # same keys, same order as the env
        edit_scale=edit_scale,
        learning_starts=0 if pretrain_steps else 5000,
        tensorboard_log=args.logdir,
        device=args.device,
        verbose=1,
    )
    if pretrain_steps:
        model.pretrain(pretrain_steps, progress_bar=True)
    model.learn(steps, progress_bar=True)
    model.save(f"{args.logdir}/expo_{meta['env_name'].lower()}")


if __name__ == "__main__":
    main()
