"""Curves of the PointMaze ablations: success along training, one panel per group of runs, one line per run.

Reads the rows that ``benchmarks/pointmaze_ablations.py`` appends (one JSON object per evaluation) and draws,
for each group, the success of the deterministic OTF action (solid) and of the EMA base alone (dotted) against
the stage: imitation, critic pretraining, then every evaluation of the online phase. Seeds are averaged, the
band is their min-max.

    python benchmarks/plot_ablations.py                       # benchmarks/results/pointmaze_ablations.png
"""

import argparse
import json
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

# Panel title -> the tags it compares (a tag's runs with any seed).
GROUPS = {
    "30% expert data, τ 0.005: critic pretraining": ["paper-o2o", "paper-o2o-subset5", "critic-pretrain-3k"],
    "10% expert data (the demo's): τ": ["critic-pretrain", "critic-pretrain-tau0.02", "baseline"],
    "one change from the demo's settings": ["baseline", "utd4", "beta0.2", "shift0", "nk8", "policy-delay1"],
    "initialisation and imitation length": ["baseline", "init-torch", "pretrain-1k", "pretrain-10k"],
}


def stage_position(row: dict) -> float:
    """x position: imitation at -2k, critic pretraining at -1k, online steps as they are."""
    return {"imitation": -2000.0, "critic pretraining": -1000.0}.get(row["stage"], float(row["env_steps"]))


def load(path: str) -> dict[str, dict[int, list[tuple[float, float, float]]]]:
    """tag -> seed -> [(x, det, base)], in row order."""
    runs: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    with open(path) as file:
        for line in file:
            row = json.loads(line)
            runs[row["tag"]][row["seed"]].append((stage_position(row), row["det"], row["base"]))
    return runs


def draw_tag(axis: plt.Axes, tag: str, seeds: dict[int, list], color: str) -> None:
    xs = sorted({x for points in seeds.values() for x, _, _ in points})
    complete = [dict((x, (det, base)) for x, det, base in points) for points in seeds.values()]
    xs = [x for x in xs if all(x in points for points in complete)]  # positions every seed reached
    if not xs:
        return
    det = np.array([[points[x][0] for x in xs] for points in complete])
    base = np.array([[points[x][1] for x in xs] for points in complete])
    axis.plot(xs, det.mean(0), color=color, label=f"{tag} (seeds {sorted(seeds)})")
    axis.fill_between(xs, det.min(0), det.max(0), color=color, alpha=0.15)
    axis.plot(xs, base.mean(0), color=color, linestyle=":")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="benchmarks/results/pointmaze_ablations.jsonl")
    parser.add_argument("--out", default="benchmarks/results/pointmaze_ablations.png")
    args = parser.parse_args()
    runs = load(args.rows)
    figure, axes = plt.subplots(2, 2, figsize=(13, 8.5), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, (title, tags) in zip(axes.flat, GROUPS.items(), strict=True):
        for color, tag in zip(colors, tags):
            if tag in runs:
                draw_tag(axis, tag, runs[tag], color)
        axis.set_title(title, fontsize=10)
        axis.set_xticks([-2000, -1000, 0, 1000, 2000, 3000, 4000, 5000])
        axis.set_xticklabels(["imit.", "critic\npretr.", "0", "1k", "2k", "3k", "4k", "5k"])
        axis.set_ylim(-0.05, 1.05)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    for axis in axes[:, 0]:
        axis.set_ylabel("success (solid: OTF action, dotted: base alone)")
    for axis in axes[1]:
        axis.set_xlabel("stage / online env steps")
    figure.suptitle("PointMaze U-maze ablations (10 episodes per point; band: min-max over seeds)")
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
