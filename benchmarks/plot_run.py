"""Plot the TensorBoard curves of one EXPO run that say whether it is healthy (docs/monitoring.md shows the demo's).

    python benchmarks/plot_run.py runs/EXPO_1 --out docs/img/healthy-run.png --title "PointMaze demo, seed 0"

Reads the run's event files (what ``tensorboard --logdir`` shows) and draws one panel per key that the run wrote,
pretraining keys on their own axis (imitation steps and offline update blocks) and online keys on env steps.
"""

import argparse
from pathlib import Path

# The keys a reader checks first (docs/monitoring.md, "What a healthy run looks like"), in reading order.
PANELS = (
    ("pretrain/base_loss", "imitation loss (pretraining)"),
    ("pretrain/q_mean", "Q of the data (critic pretraining)"),
    ("rollout/success_rate", "success of training episodes"),
    ("train/q_mean", "Q of the buffer (online)"),
    ("train/critic_loss", "critic TD loss (online)"),
    ("train/edit_win_rate", "share of OTF choices won by an edit"),
    ("train/imitation_online_share", "share of imitation rows from online successes"),
    ("train/ent_coef", "temperature α"),
)


def read_scalars(logdir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Every scalar key of the run: (steps, values)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        key: ([event.step for event in events], [event.value for event in events])
        for key in accumulator.Tags()["scalars"]
        for events in [accumulator.Scalars(key)]
    }


def plot_run(scalars: dict[str, tuple[list[int], list[float]]], out: Path, title: str) -> Path:
    """One panel per key of :data:`PANELS` that the run wrote; returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(key, label) for key, label in PANELS if key in scalars]
    columns = 2
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(10, 2.6 * rows), squeeze=False)
    for axis, (key, label) in zip(axes.flat, panels):
        steps, values = scalars[key]
        axis.plot(steps, values, color="tab:red" if key.startswith("pretrain/") else "tab:blue")
        axis.set_title(f"{label}\n{key}", fontsize=9)
        axis.set_xlabel("pretraining step" if key.startswith("pretrain/") else "env steps", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdir", type=Path, help="one run's folder (e.g. runs/EXPO_1)")
    parser.add_argument("--out", type=Path, default=Path("run.png"))
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    print(plot_run(read_scalars(args.logdir), args.out, args.title or str(args.logdir)))


if __name__ == "__main__":
    main()
