"""
Soak test: many tiny EXPO updates on Pendulum-v1 in two settings that stress the numerics, checking
that nothing becomes NaN, that the temperature α stays within its clamp and that memory stays flat.

- ``beta-0.05``: ``edit_scale=0.05`` (β small: the edit's entropy target is low, α is pushed hardest);
- ``reward-scale-1000``: ``reward_scale=1000`` (Q-values of order 1e5-1e6, critic losses of order 1e10).

Each runs ``--updates`` critic updates (``gradient_steps=20`` per env step, a policy update every 2).
The replay buffer (``--buffer-size`` transitions) is full early, so any later growth of the resident
memory would be a leak. Writes one JSON per run and a markdown table::

    taskset -c 1 python benchmarks/soak.py --updates 100000 --out benchmarks/results/soak
"""

import argparse
import json
import math
import resource
import time
from pathlib import Path

import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from sb3_expo import EXPO
from sb3_expo.expo import LOG_ENT_COEF_MAX, LOG_ENT_COEF_MIN

SETTINGS = {"beta-0.05": dict(edit_scale=0.05), "reward-scale-1000": dict(reward_scale=1000.0)}
TINY = dict(
    learning_starts=200,
    batch_size=16,
    gradient_steps=20,
    policy_delay=2,
    n_critics=3,
    n_base_samples=3,
    n_edit_samples=2,
    diffusion_steps=4,
    policy_kwargs=dict(net_arch=[16, 16], denoiser_width=16, denoiser_blocks=1),
    device="cpu",
)
PAGE = resource.getpagesize()


def rss_mb() -> float:
    """The resident memory of this process now, in MB."""
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * PAGE / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


class Watch(BaseCallback):
    """
    Every ``every`` env steps: α, the resident memory, and whether every parameter is finite, appended to
    ``progress`` as a JSON line (a run stopped early keeps its samples). Stops training after ``deadline``.
    """

    def __init__(self, every: int, progress: Path, deadline: float):
        super().__init__()
        self.every = every
        self.progress = progress
        self.deadline = deadline
        self.samples: list[dict[str, float]] = []
        self.stopped_by_time_limit = False

    def _on_rollout_start(self) -> None:
        if self.num_timesteps % self.every != 0:
            return
        model = self.model
        finite = all(bool(th.isfinite(parameter).all()) for parameter in model.policy.parameters())
        self.samples.append(
            dict(
                env_steps=self.num_timesteps,
                updates=model._n_updates,
                log_alpha=float(model.log_ent_coef.item()),
                rss_mb=rss_mb(),
                peak_rss_mb=peak_rss_mb(),
                finite=finite,
                seconds=time.perf_counter(),
            )
        )
        with open(self.progress, "a") as file:
            file.write(json.dumps(self.samples[-1]) + "\n")

    def _on_step(self) -> bool:
        self.stopped_by_time_limit = time.perf_counter() > self.deadline
        return not self.stopped_by_time_limit


def soak(name: str, updates: int, buffer_size: int, every: int, out: Path, minutes: float) -> dict:
    th.manual_seed(0)
    kwargs = {**TINY, "policy_kwargs": dict(TINY["policy_kwargs"]), **SETTINGS[name]}  # EXPO adds its options to policy_kwargs
    model = EXPO("MlpPolicy", "Pendulum-v1", seed=0, buffer_size=buffer_size, **kwargs)
    env_steps = model.learning_starts + math.ceil(updates / model.gradient_steps)
    progress = out / f"{name}.progress.jsonl"
    progress.unlink(missing_ok=True)
    start, error = time.perf_counter(), None
    watch = Watch(every, progress, start + 60 * minutes)
    try:
        model.learn(env_steps, callback=watch)
    except FloatingPointError as raised:  # a NaN loss: reported, not hidden
        error = str(raised)
    seconds = time.perf_counter() - start
    samples = watch.samples
    log_alphas = [sample["log_alpha"] for sample in samples]
    warm = next((s for s in samples if s["env_steps"] >= model.learning_starts + buffer_size), samples[0])
    return dict(
        setting=name,
        settings=SETTINGS[name],
        critic_updates=model._n_updates,
        target_critic_updates=updates,
        stopped_by_time_limit=watch.stopped_by_time_limit,
        policy_updates=model._n_policy_updates,
        env_steps=model.num_timesteps,
        seconds=round(seconds, 1),
        error=error,
        all_parameters_finite=all(bool(th.isfinite(p).all()) for p in model.policy.parameters()),
        every_sample_finite=all(sample["finite"] for sample in samples),
        log_alpha_min=min(log_alphas),
        log_alpha_max=max(log_alphas),
        log_alpha_end=log_alphas[-1],
        alpha_within_clamp=all(LOG_ENT_COEF_MIN <= value <= LOG_ENT_COEF_MAX for value in log_alphas),
        rss_mb_first=samples[0]["rss_mb"],
        rss_mb_warm=warm["rss_mb"],
        rss_mb_end=samples[-1]["rss_mb"],
        peak_rss_mb_warm=warm["peak_rss_mb"],
        peak_rss_mb_end=samples[-1]["peak_rss_mb"],
        warm_at_env_steps=warm["env_steps"],
        samples=samples,
    )


def table(results: list[dict]) -> str:
    lines = [
        "| setting | critic updates | policy updates | env steps | time | NaN | log α min / max / end (clamp ±20) "
        "| RSS MB warm → end | peak RSS MB warm → end |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        nan = "none" if r["error"] is None and r["all_parameters_finite"] and r["every_sample_finite"] else "YES"
        stopped = " (time limit)" if r["stopped_by_time_limit"] else ""
        lines.append(
            f"| {r['setting']} | {r['critic_updates']}{stopped} | {r['policy_updates']} | {r['env_steps']} "
            f"| {r['seconds'] / 60:.1f} min "
            f"| {nan} | {r['log_alpha_min']:.2f} / {r['log_alpha_max']:.2f} / {r['log_alpha_end']:.2f} "
            f"| {r['rss_mb_warm']:.0f} → {r['rss_mb_end']:.0f} | {r['peak_rss_mb_warm']:.0f} → {r['peak_rss_mb_end']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=100_000, help="critic updates per setting")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--buffer-size", type=int, default=1000, help="replay buffer transitions (full early)")
    parser.add_argument("--every", type=int, default=100, help="env steps between two samples")
    parser.add_argument("--out", default="benchmarks/results/soak", help="folder of the results")
    parser.add_argument("--minutes", type=float, default=float("inf"), help="stop a setting after this long (reported)")
    args = parser.parse_args()
    th.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.settings:
        result = soak(name, args.updates, args.buffer_size, args.every, out, args.minutes)
        results.append(result)
        (out / f"{name}.json").write_text(json.dumps(result, indent=1))
        print(table([result]).splitlines()[-1], flush=True)
    (out / "soak.md").write_text(
        f"Soak: {args.updates} critic updates per setting, tiny networks, Pendulum-v1, one CPU thread "
        f"(`python benchmarks/soak.py --updates {args.updates}`).\n\n{table(results)}\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()
