"""
Aggregate the jobs of a benchmark folder into ``results.csv`` (every evaluation of every job), one
``<task>.png`` per task (mean and min-max over seeds, one line per method) and ``results.md`` (success
at fixed env-step counts: mean ± std over seeds and the per-seed values).

    python -m benchmarks.learning.report --out benchmarks/learning/results [--table-steps 0 2500 5000]

``run.py`` calls it at the end; run it by hand to look at a benchmark that is still running.
A method whose job has rows at step 0 only (``bc``, never trained online) is drawn flat over the
env-step axis and its table cells say so.
"""

import argparse
import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, works in worker processes and on servers
import matplotlib.pyplot as plt
import numpy as np

INT_COLUMNS, STR_COLUMNS = ("seed", "env_steps"), ("task", "method")
METRICS = {
    "success_rate": "success rate, stochastic action (the OTF action the paper evaluates)",
    "success_rate_deterministic": "success rate, deterministic=True",
}
MAX_TABLE_COLUMNS = 8
FLAT_MARK = "†"

Row = dict[str, float | int | str]
# task -> method -> seed -> env_steps -> row
Results = dict[str, dict[str, dict[int, dict[int, Row]]]]


def read_rows(out: Path, file_name: str = "rows.csv") -> list[Row]:
    """
    Every row of every job under ``out/jobs``, typed, sorted by task, method, seed and env steps (``file_name``: the
    rows of another evaluation, as :mod:`benchmarks.learning.reevaluate` writes them).
    """
    rows: list[Row] = []
    for path in sorted(out.glob(f"jobs/*/{file_name}")):
        with path.open(newline="") as file:
            for row in csv.DictReader(file):
                rows.append(
                    {
                        key: value if key in STR_COLUMNS else int(value) if key in INT_COLUMNS else float(value)
                        for key, value in row.items()
                    }
                )
    return sorted(rows, key=lambda row: (row["task"], row["method"], row["seed"], row["env_steps"]))


def group(rows: Sequence[Row]) -> Results:
    results: Results = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        results[row["task"]][row["method"]].setdefault(row["seed"], {})[row["env_steps"]] = row  # type: ignore[index]
    return results


def is_flat(seeds: dict[int, dict[int, Row]]) -> bool:
    """A method evaluated at step 0 only never learned online: its value holds for every env-step count."""
    return all(set(by_step) == {0} for by_step in seeds.values())


def values_at(seeds: dict[int, dict[int, Row]], step: int, metric: str) -> list[float]:
    """The metric of every seed evaluated at ``step`` (at step 0 for a flat method), in seed order."""
    step = 0 if is_flat(seeds) else step
    return [float(by_step[step][metric]) for _, by_step in sorted(seeds.items()) if step in by_step]


def write_csv(rows: Sequence[Row], path: Path) -> None:
    columns = list(rows[0]) if rows else ["task", "method", "seed", "env_steps"]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def plot_task(task: str, methods: dict[str, dict[int, dict[int, Row]]], path: Path) -> None:
    """One panel per success metric; a line per method (mean over seeds) and a band from the worst to the best seed."""
    last_step = max((step for seeds in methods.values() for by_step in seeds.values() for step in by_step), default=0)
    figure, axes = plt.subplots(1, len(METRICS), figsize=(6 * len(METRICS), 4.2), sharey=True)
    for axis, (metric, title) in zip(np.atleast_1d(axes), METRICS.items()):
        for method, seeds in sorted(methods.items()):
            flat = is_flat(seeds)
            steps = [0, max(last_step, 1)] if flat else sorted({step for by_step in seeds.values() for step in by_step})
            values = [values_at(seeds, step, metric) for step in steps]  # seeds may differ in how far they got
            mean, low, high = ([reduce(v) for v in values] for reduce in (np.mean, np.min, np.max))
            label = f"{method} (step 0, flat)" if flat else method
            (line,) = axis.plot(steps, mean, label=label, linestyle="--" if flat else "-", marker=None if flat else "o")
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        axis.set(title=title, xlabel="online env steps", ylim=(-0.03, 1.03))
        axis.grid(alpha=0.3)
    first_axis = np.atleast_1d(axes)[0]
    first_axis.set_ylabel("success rate")
    first_axis.legend(loc="best", fontsize="small")
    n_seeds = max(len(seeds) for seeds in methods.values())
    figure.suptitle(f"{task}: mean over seeds (up to {n_seeds}), band = min-max over seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def table_steps(methods: dict[str, dict[int, dict[int, Row]]], wanted: Sequence[int] | None = None) -> list[int]:
    """The env-step counts of the table: ``wanted``, else the evaluated ones (at most 8, evenly spread, the last kept)."""
    if wanted:
        return sorted(wanted)
    learners = [seeds for seeds in methods.values() if not is_flat(seeds)]
    steps = sorted({step for seeds in learners for by_step in seeds.values() for step in by_step}) or [0]
    if len(steps) > MAX_TABLE_COLUMNS:
        steps = [steps[i] for i in np.linspace(0, len(steps) - 1, MAX_TABLE_COLUMNS).round().astype(int)]
    return steps


def cell(values: Sequence[float], flat_mark: str = "") -> str:
    """``mean ± std (seed values)``; std over seeds with ddof=0; a dash where no seed got that far."""
    if not values:
        return "–"
    per_seed = ", ".join(f"{value:.2f}" for value in values)
    return f"{np.mean(values):.2f} ± {np.std(values):.2f} ({per_seed}){flat_mark}"


def task_tables(methods: dict[str, dict[int, dict[int, Row]]], steps: Sequence[int]) -> list[str]:
    lines = []
    for metric, title in METRICS.items():
        lines += [f"### {title}", "", f"| method | {' | '.join(f'{step} steps' for step in steps)} | final wall (s) |"]
        lines.append(f"|---|{'---|' * len(steps)}---|")
        for method, seeds in sorted(methods.items()):
            mark = FLAT_MARK if is_flat(seeds) else ""
            cells = [cell(values_at(seeds, step, metric), mark if step > 0 else "") for step in steps]
            final_wall = [float(by_step[max(by_step)]["wall_s"]) for _, by_step in sorted(seeds.items())]
            wall = f"{np.mean(final_wall):.0f} ± {np.std(final_wall):.0f}"
            lines.append(f"| {method} | {' | '.join(cells)} | {wall} |")
        lines.append("")
    return lines


def final_and_auc(by_step: dict[int, Row], metric: str) -> tuple[float, float, float]:
    """One seed's success at step 0, at its last evaluation, and its area under the curve (trapezoid, as a mean)."""
    steps = sorted(by_step)
    values = [float(by_step[step][metric]) for step in steps]
    auc = float(np.trapezoid(values, steps) / (steps[-1] - steps[0])) if len(steps) > 1 else values[0]
    return values[0], values[-1], auc


def summary(results: Results, split: dict[str, str]) -> list[str]:
    """
    Per task and method: success after pretraining (step 0), final success and area under the curve, mean over
    seeds, and the fine-tuning checks of every method that learns online: ``holds`` (final ≥ step 0 − 0.05 in the
    mean of both evaluation modes, and no seed more than 0.2 below its own step 0) and ``vs rlpd`` (final success or
    area ahead of ``rlpd``'s in either mode, at equal env steps: :func:`_versus`). The checks matter for the
    offline-to-online methods (``expo-o2o``).
    """
    lines = [
        "## Summary",
        "",
        "Mean over seeds; stochastic / deterministic evaluation. AUC: mean success over the online steps (trapezoid).",
        "",
        "| task | split | method | seeds | step 0 | final | AUC | holds | vs rlpd |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, methods in sorted(results.items(), key=lambda item: (split.get(item[0], ""), item[0])):
        means: dict[str, dict[str, tuple[float, float, float]]] = {}
        for method, seeds in sorted(methods.items()):
            per_metric = {}
            for metric in METRICS:
                per_seed = np.array([final_and_auc(by_step, metric) for by_step in seeds.values()])
                per_metric[metric] = tuple(per_seed.mean(axis=0))
            means[method] = per_metric
            holds = versus = ""
            if not is_flat(seeds):
                holds = "yes" if all(_holds(seeds, metric, per_metric[metric]) for metric in METRICS) else "**no**"
                if "rlpd" in methods and method != "rlpd":
                    versus = _versus(seeds, methods["rlpd"])
            figures = [" / ".join(f"{per_metric[metric][i]:.2f}" for metric in METRICS) for i in range(3)]
            cells = [task, split.get(task, ""), method, str(len(seeds)), *figures, holds, versus]
            lines.append(f"| {' | '.join(cells)} |")
    return [*lines, ""]


def _versus(seeds: dict[int, dict[int, Row]], rlpd: dict[int, dict[int, Row]]) -> str:
    """
    ``ahead`` / ``behind`` / ``tied`` (every figure equal, e.g. both at 0) RLPD at equal env steps: both curves cut
    at the last step that every seed of both reached (unfinished jobs compare fairly), then final success or area
    ahead in either evaluation mode. The step is shown.
    """
    common = min(max(by_step) for runs in (seeds, rlpd) for by_step in runs.values())

    def means(runs: dict[int, dict[int, Row]], metric: str) -> np.ndarray:
        cut = [{step: row for step, row in by_step.items() if step <= common} for by_step in runs.values()]
        return np.mean([final_and_auc(by_step, metric) for by_step in cut], axis=0)

    pairs = [(means(seeds, metric)[i], means(rlpd, metric)[i]) for metric in METRICS for i in (1, 2)]
    if any(ours > theirs for ours, theirs in pairs):
        return f"ahead at {common}"
    return f"{'tied' if all(ours == theirs for ours, theirs in pairs) else 'behind'} at {common}"


def _holds(seeds: dict[int, dict[int, Row]], metric: str, mean: tuple[float, float, float]) -> bool:
    start, final, _ = mean
    worst_drop = max(first - last for first, last, _ in (final_and_auc(by_step, metric) for by_step in seeds.values()))
    return final >= start - 0.05 and worst_drop <= 0.2


def markdown(results: Results, wanted_steps: Sequence[int] | None = None, split: dict[str, str] | None = None) -> str:
    lines = [
        "# Learning benchmark results",
        "",
        "Success rate over each task's evaluation episodes: mean ± std over seeds (ddof=0), then the value of every",
        "seed in increasing seed order. Step 0 is before any online step (after pretraining for `expo-o2o` and `bc`).",
        f"{FLAT_MARK} never trained online: evaluated once, at step 0, and carried flat over the env-step axis.",
        "Final wall (s): mean ± std over seeds of each job's wall time at its last evaluation, evaluations included.",
        "",
        *summary(results, split or {}),
    ]
    for task, methods in sorted(results.items()):
        seeds = sorted({seed for by_seed in methods.values() for seed in by_seed})
        lines += [f"## {task}", "", f"Seeds: {', '.join(map(str, seeds))}.", "", f"![{task}]({task}.png)", ""]
        lines += task_tables(methods, table_steps(methods, wanted_steps))
    return "\n".join(lines)


def write_report(out: Path, wanted_steps: Sequence[int] | None = None) -> None:
    """``results.csv``, ``<task>.png`` per task and ``results.md`` under ``out``, from the job rows found there."""
    rows = read_rows(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "results.csv")
    results = group(rows)
    for task, methods in results.items():
        plot_task(task, methods, out / f"{task}.png")
    from benchmarks.learning.tasks import TASKS  # the split of each registered task, for the summary

    split = {name: task.split for name, task in TASKS.items()}
    (out / "results.md").write_text(markdown(results, wanted_steps, split))
    print(f"report: {len(rows)} rows of {len(results)} task(s) in {out}/results.csv, results.md and the task PNGs")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/learning/results"))
    parser.add_argument("--table-steps", type=int, nargs="+", default=None, help="env-step counts of the table's columns")
    args = parser.parse_args(argv)
    write_report(args.out, args.table_steps)


if __name__ == "__main__":
    main()
