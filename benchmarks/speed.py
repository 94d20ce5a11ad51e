"""What an EXPO update costs, where the time goes, and how it compares with SB3's SAC in the same run.

For a named configuration it prints (markdown tables):

- learner: median time of one ``train()`` call (one env step's UTD block) on a filled replay buffer,
  critic updates/s, FLOPs per call (counted by ``torch.utils.flop_counter``) against docs/algorithm.md, "Cost"'s cost
  model, achieved TFLOP/s, and SB3 SAC's ``train()`` at the same UTD, batch and critic size; the ratio;
- acting: median time of one ``predict`` (one OTF action), EXPO vs SAC;
- full training: env steps/s of ``learn()`` and the time split (target sampling, critic steps, policy
  updates, env stepping, acting), peak memory;
- optimisations: each one against the plain way of doing the same work, as a speed-up ratio measured
  in this run (candidates for all TD targets in one pass, only the subsets' critics in the TD target,
  the vectorised critic ensemble, the fast sampler against the plain DDPM loop (``diffusion.ddpm_sample``),
  the hoisted time embedding, the input layer's fixed terms computed once per sampler call, one replay
  draw per call, no host sync per critic step, oneDNN for no-grad CPU layers, ``torch.compile``, bf16).

    python benchmarks/speed.py --config tiny                 # CPU, one thread: about a minute
    python benchmarks/speed.py --config demo --compile-mode auto   # the PointMaze demo's sizes, EXPO's default
    python benchmarks/speed.py --config paper --repeats 3    # CPU: several minutes (seconds per update)
    python benchmarks/speed.py --config paper --device cuda --compile-mode reduce-overhead  # GPU, CUDA graphs

Synthetic task: a Box env with AntMaze's sizes (29-dim observations, 8-dim actions) and random transitions.
"""

import argparse
import contextlib
import datetime
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import polyak_update
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sb3_expo import EXPO, backend, diffusion
from sb3_expo.critics import CriticEnsemble, random_subsets
from sb3_expo.expo import td_target

CONFIGS: dict[str, dict[str, Any]] = {
    # docs/algorithm.md and docs/tasks.md: 3x256 critic and edit actor, 10 critics, N=K=8, T=10, batch 256, UTD 20.
    "paper": dict(net_arch=[256, 256, 256], n_critics=10, n=8, k=8, t=10, batch_size=256, utd=20, width=256, blocks=3),
    # The tiny CPU configuration: hidden 32, 3 critics, N=K=4, T=10, batch 32, a 1-block width-32 denoiser, UTD 2.
    "tiny": dict(net_arch=[32, 32], n_critics=3, n=4, k=4, t=10, batch_size=32, utd=2, width=32, blocks=1),
    # The PointMaze demo (examples/offline_to_online_pointmaze.py) and the learning suite's PointMaze / FetchPush.
    "demo": dict(net_arch=[64, 64], n_critics=5, n=4, k=4, t=10, batch_size=128, utd=2, width=64, blocks=2),
}
OBS_DIM, ACTION_DIM = 29, 8


class SyntheticEnv(gym.Env):
    """Random observations with AntMaze's sizes; episodes of 1000 steps. Stepping costs next to nothing."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._steps = 0
        return self.observation_space.sample(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._steps += 1
        return self.observation_space.sample(), float(self.np_random.normal()), False, self._steps >= 1000, {}


def synchronize(device: th.device) -> None:
    if device.type == "cuda":
        th.cuda.synchronize(device)


def median_time(fn: Callable[[], Any], repeats: int, device: th.device, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls (compilation, caches)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_median_times(
    first: Callable[[], Any], second: Callable[[], Any], repeats: int, device: th.device, warmup: int = 1
) -> tuple[float, float]:
    """
    Median wall times of ``first()`` and ``second()``, timed in alternation so that a shared machine's
    changing load hits both alike: their ratio is what the tables report.
    """
    for _ in range(warmup):
        first()
        second()
    first_times, second_times = [], []
    for _ in range(repeats):
        for fn, times in ((first, first_times), (second, second_times)):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(first_times), statistics.median(second_times)


def fill(model: Any, n: int, seed: int = 0) -> None:
    """``n`` random transitions in the model's replay buffer."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        obs, next_obs = rng.normal(size=(2, 1, OBS_DIM)).astype(np.float32)
        action = rng.uniform(-1, 1, size=(1, ACTION_DIM)).astype(np.float32)
        model.replay_buffer.add(obs, next_obs, action, rng.normal(size=1), np.zeros(1), [{}])


def policy_kwargs(config: dict) -> dict[str, Any]:
    return dict(net_arch=config["net_arch"], denoiser_width=config["width"], denoiser_blocks=config["blocks"])


def make_expo(config: dict, device: str, **overrides: Any) -> EXPO:
    kwargs = dict(
        learning_starts=0,
        batch_size=config["batch_size"],
        gradient_steps=config["utd"],
        policy_delay=config["utd"],
        n_critics=config["n_critics"],
        n_base_samples=config["n"],
        n_edit_samples=config["k"],
        diffusion_steps=config["t"],
        buffer_size=20_000,
        policy_kwargs=policy_kwargs(config),
        device=device,
        seed=0,
        compile_mode=None,  # eager unless a measurement asks for the compiled graphs
    )
    model = EXPO("MlpPolicy", SyntheticEnv(), **{**kwargs, **overrides})
    model.set_logger(configure(None, []))
    return model


def make_sac(config: dict, device: str) -> SAC:
    model = SAC(
        "MlpPolicy",
        SyntheticEnv(),
        learning_starts=0,
        batch_size=config["batch_size"],
        gradient_steps=config["utd"],
        buffer_size=20_000,
        policy_kwargs=dict(net_arch=config["net_arch"], n_critics=config["n_critics"]),  # EXPO's critic ensemble
        device=device,
        seed=0,
    )
    model.set_logger(configure(None, []))
    return model


def cost_model_flops(config: dict) -> float:
    """One env step in docs/algorithm.md ("Cost"): the TD targets' denoiser rows, 2 FLOPs per weight and row."""
    width, blocks = config["width"], config["blocks"]
    denoiser_weights = (ACTION_DIM + OBS_DIM + width) * width + blocks * 2 * 4 * width * width + width * ACTION_DIM
    rows = config["utd"] * config["batch_size"] * config["n"] * config["t"]
    return 2.0 * denoiser_weights * rows


# ------------------------------------------------------------------------------------------ measurements


def measure_learner(config: dict, device: str, repeats: int) -> dict[str, float]:
    expo, sac = make_expo(config, device), make_sac(config, device)
    fill(expo, 10_000)
    fill(sac, 10_000)
    dev = expo.device
    expo_s, sac_s = paired_median_times(
        lambda: expo.train(config["utd"], config["batch_size"]),
        lambda: sac.train(config["utd"], config["batch_size"]),
        repeats,
        dev,
    )
    # The counter does not know oneDNN's op: count with F.linear / batched matmul everywhere.
    with FlopCounterMode(display=False) as counter, backend.configured(onednn=False):
        expo.train(config["utd"], config["batch_size"])
    # The sampler alone on one env step's TD-target rows (UTD x batch x N): compare benchmarks/jax_sampler.py.
    rows = th.randn(config["utd"] * config["batch_size"] * config["n"], OBS_DIM, device=dev)
    noise = th.randn(config["t"], rows.shape[0], ACTION_DIM, device=dev)
    with th.no_grad():
        sampler_s = median_time(lambda: expo.base.denoise(rows, noise), repeats, dev)
    obs = np.zeros(OBS_DIM, dtype=np.float32)
    act_expo, act_sac = paired_median_times(lambda: expo.predict(obs), lambda: sac.predict(obs), max(repeats, 20), dev, 3)
    return dict(
        expo_s=expo_s,
        sac_s=sac_s,
        flops=counter.get_total_flops(),
        sampler_s=sampler_s,
        act_expo_s=act_expo,
        act_sac_s=act_sac,
    )


@contextlib.contextmanager
def timed_methods(targets: list[tuple[Any, str, str]], totals: dict[str, float], device: th.device) -> Iterator[None]:
    """Accumulate the wall time of ``owner.method`` calls under ``name`` while inside the block."""
    originals = []
    for owner, method, name in targets:
        original = getattr(owner, method)
        originals.append((owner, method, original))

        def wrapper(*args: Any, _original: Callable = original, _name: str = name, **kwargs: Any) -> Any:
            synchronize(device)
            start = time.perf_counter()
            result = _original(*args, **kwargs)
            synchronize(device)
            totals[_name] = totals.get(_name, 0.0) + time.perf_counter() - start
            return result

        setattr(owner, method, wrapper)
    try:
        yield
    finally:
        for owner, method, original in originals:
            setattr(owner, method, original)


def measure_training(config: dict, device: str, env_steps: int, compile_mode: str | None = None) -> dict[str, Any]:
    """``learn()`` on the synthetic env after a filled buffer: env steps/s and where the time goes."""
    model = make_expo(config, device, compile_mode=compile_mode)
    fill(model, 5_000)
    model.learn(2, reset_num_timesteps=False)  # warm-up: allocator, first calls (compilation)
    totals: dict[str, float] = {}
    env = model.get_env()
    if model.steps.stretch != model._stretch:  # one graph per stretch: its pieces cannot be timed apart
        targets = [(model.steps, "stretch", "stretches, one graph each (candidates, critic steps, policy update)")]
    else:  # the steps as train() calls them (eager methods or compiled graphs)
        targets = [
            (model, "_target_candidates", "target sampling (OTF candidates at s')"),
            (model.steps, "critic_step", "critic steps (target scoring, TD target, loss, Adam, Polyak)"),
            (model.steps, "policy_step", "policy updates (base + EMA, edit actor, temperature)"),
        ]
    targets += [(env, "step", "env stepping"), (model, "_sample_action", "acting (OTF action)")]
    if model.device.type == "cuda":
        th.cuda.reset_peak_memory_stats(model.device)
    with timed_methods(targets, totals, model.device):
        synchronize(model.device)
        start = time.perf_counter()
        model.learn(env_steps, reset_num_timesteps=False)
        synchronize(model.device)
        wall = time.perf_counter() - start
    if model.device.type == "cuda":
        peak = th.cuda.max_memory_allocated(model.device) / 2**20
        peak_label = "peak GPU memory allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
        peak_label = "peak process RSS (whole benchmark)"
    return dict(wall=wall, env_steps=env_steps, totals=totals, peak_mib=peak, peak_label=peak_label)


# ------------------------------------------------------------------------------ optimisations, plain vs ours


class LoopCritics(nn.Module):
    """The plain ensemble: E separate LayerNorm MLPs called one after the other."""

    def __init__(self, in_features: int, net_arch: list[int], n_critics: int):
        super().__init__()
        members = []
        for _ in range(n_critics):
            layers: list[nn.Module] = []
            size = in_features
            for width in net_arch:
                layers += [nn.Linear(size, width), nn.LayerNorm(width), nn.ReLU()]
                size = width
            members.append(nn.Sequential(*layers, nn.Linear(size, 1)))
        self.members = nn.ModuleList(members)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return th.stack([member(x).squeeze(-1) for member in self.members])


def denoise_with_full_input_layer(policy: diffusion.DiffusionPolicy, obs: th.Tensor, noise: th.Tensor) -> th.Tensor:
    """The sampler with the whole input layer, ``W·[x; s; emb(k)] + b``, at every step."""
    x = noise[0]
    time_embeddings = policy.denoiser.embed_time(th.arange(policy.n_steps, device=obs.device))
    for k, eps_scale, inv_sqrt_alpha, noise_scale in policy.sampler_schedule:
        x = x.sub(policy.denoiser(obs, x, time_embeddings[k : k + 1]), alpha=eps_scale).mul_(inv_sqrt_alpha)
        if k > 0:
            x = x.add_(noise[policy.n_steps - k], alpha=noise_scale)
        x = x.clamp_(-1.0, 1.0)
    return x


def measure_optimisations(config: dict, device: str, repeats: int, compile_mode: str | None) -> list[tuple[str, float, float]]:
    """(optimisation, plain seconds, optimised seconds) for each optimisation, timed in alternation here and now."""
    model = make_expo(config, device)
    fill(model, 10_000)
    dev, policy, utd, batch = model.device, model.policy, config["utd"], config["batch_size"]
    rows: list[tuple[str, float, float]] = []

    def compare(name: str, plain: Callable[[], Any], ours: Callable[[], Any]) -> None:
        rows.append((name, *paired_median_times(plain, ours, repeats, dev)))

    def no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
        return th.no_grad()(fn)

    def train() -> None:
        model.train(utd, batch)

    # TD-target candidates (docs/algorithm.md, "One update"): one batched pass, in cache-sized chunks on a CPU.
    next_obs = th.randn(utd * batch, OBS_DIM, device=dev)
    candidates_at_once = no_grad(lambda: model.steps.candidates(next_obs, model.base))
    compare(
        "TD-target candidates: one pass for all UTD batches (vs one per batch)",
        no_grad(lambda: [model.steps.candidates(rows, model.base) for rows in next_obs.split(batch)]),
        candidates_at_once,
    )
    if dev.type == "cpu":

        def one_pass() -> None:
            with backend.configured(cpu_chunk_rows=1 << 30):
                candidates_at_once()

        compare(f"CPU: sampler in chunks of {backend.CPU_CHUNK_ROWS} rows (vs one pass)", one_pass, candidates_at_once)

    base, base_rows = model.base, next_obs[:batch].repeat_interleave(config["n"], dim=0)
    noise = th.randn(config["t"], base_rows.shape[0], ACTION_DIM, device=dev)
    compare(
        "sampler: the fast one (vs the plain DDPM loop, diffusion.ddpm_sample), one batch, no chunks",
        no_grad(lambda: base.denoise_plain(base_rows, noise)),
        no_grad(lambda: base.denoise_eager(base_rows, noise)),
    )
    compare(
        "sampler: the input layer's observation and time terms once per call (vs every step), one batch",
        no_grad(lambda: denoise_with_full_input_layer(base, base_rows, noise)),
        no_grad(lambda: base.denoise_eager(base_rows, noise)),
    )
    denoiser, noisy = base.denoiser, th.randn(base_rows.shape[0], ACTION_DIM, device=dev)
    steps = th.arange(config["t"], device=dev)
    compare(
        "time embedding: once per step (vs per row), T denoiser passes",
        no_grad(lambda: [denoiser(base_rows, noisy, step.expand(base_rows.shape[0])) for step in steps]),
        no_grad(lambda: [denoiser(base_rows, noisy, emb[None]) for emb in denoiser.embed_time(steps)]),
    )

    # TD target: only the subsets' target critics (docs/algorithm.md, "One update").
    candidates = candidates_at_once()[:batch].view(batch, config["n"] + config["k"], ACTION_DIM)
    rewards, not_terminal = th.randn(batch, device=dev), th.ones(batch, device=dev)
    selection, value = random_subsets(config["n_critics"], model.critic_subset_size, 2, dev)

    def target_from_all_critics() -> th.Tensor:
        q_all = policy.score_candidates(next_obs[:batch], candidates)  # (E, B, C)
        best = q_all[selection].min(dim=0).values.argmax(dim=1)
        q_best = q_all[value][:, th.arange(batch, device=dev), best].min(dim=0).values
        return rewards + model.gamma * not_terminal * q_best

    compare(
        "TD target: run only the subsets' target critics (vs all E, then pick the subsets)",
        no_grad(target_from_all_critics),
        no_grad(
            lambda: td_target(
                model.critic_target, next_obs[:batch], candidates, rewards, not_terminal, model.gamma, selection, value
            )
        ),
    )

    x = th.randn(batch, OBS_DIM + ACTION_DIM, device=dev)
    loop = LoopCritics(OBS_DIM + ACTION_DIM, config["net_arch"], config["n_critics"]).to(dev)
    ensemble = CriticEnsemble(OBS_DIM, ACTION_DIM, config["net_arch"], config["n_critics"]).to(dev)
    compare(
        "critic ensemble: batched weights (vs a loop over E MLPs), forward + backward",
        lambda: loop(x).square().mean().backward(),
        lambda: ensemble(x[:, :OBS_DIM], x[:, OBS_DIM:]).square().mean().backward(),
    )

    # Not used by EXPO (1.00x on CPU): one foreach kernel instead of two per tensor, which may pay on a GPU.
    critic_params, target_params = list(model.critic.parameters()), list(model.critic_target.parameters())
    compare(
        "candidate: Polyak update of the target critics as one foreach lerp (vs SB3's two ops per tensor)",
        lambda: polyak_update(critic_params, target_params, model.tau),
        no_grad(lambda: th._foreach_lerp_(target_params, critic_params, model.tau)),
    )

    buffer = model.replay_buffer
    compare(
        "replay: one draw of UTD x batch rows (vs UTD draws)",
        lambda: [buffer.sample(batch) for _ in range(utd)],
        lambda: buffer.sample(utd * batch),
    )

    # Whole train() calls with one piece switched back to its plain version.
    original_critic_step = model.steps.critic_step

    def train_with_sync_per_step() -> None:
        def critic_step_with_sync(*args: Any) -> dict[str, th.Tensor]:
            metrics = original_critic_step(*args)
            metrics["critic_loss"].item()  # what logging each loss as it comes would do
            return metrics

        model.steps.critic_step = critic_step_with_sync
        train()
        model.steps.critic_step = original_critic_step

    compare("metrics: one host read per train() (vs .item() per critic step)", train_with_sync_per_step, train)

    unfused_kwargs = dict(optimizer_kwargs={}, base_optimizer_kwargs={"weight_decay": 1e-4})
    unfused = make_expo(config, device, policy_kwargs={**policy_kwargs(config), **unfused_kwargs})
    fill(unfused, 10_000)
    compare("optimisers: fused Adam / AdamW (vs one loop per tensor) in train()", lambda: unfused.train(utd, batch), train)

    if dev.type == "cpu" and backend.ONEDNN_AVAILABLE:

        def train_plain_linear() -> None:
            with backend.configured(onednn=False):
                train()

        compare("CPU: no-grad layers through oneDNN (vs F.linear / batched matmul) in train()", train_plain_linear, train)

        def sampler_unfused_silu() -> None:
            with backend.configured(fuse_silu=False):
                candidates_at_once()

        compare(
            "CPU: SiLU fused into oneDNN's matmul (vs a separate SiLU), TD-target candidates",
            sampler_unfused_silu,
            candidates_at_once,
        )

    if compile_mode is not None:
        compiled = make_expo(config, device, compile_mode=compile_mode)
        fill(compiled, 10_000)
        start = time.perf_counter()
        compiled.train(utd, batch)  # compiles the candidates, the critic step and the policy step graphs
        synchronize(dev)
        print(f"compile time of the train() graphs ({compile_mode}): {time.perf_counter() - start:.1f} s", flush=True)
        compare(f"compiled graphs (compile_mode={compile_mode!r}), train()", train, lambda: compiled.train(utd, batch))
        observation = np.zeros(OBS_DIM, dtype=np.float32)
        compare(
            f"compiled graphs (compile_mode={compile_mode!r}), predict()",
            lambda: model.predict(observation),
            lambda: compiled.predict(observation),
        )
    if dev.type == "cuda" or th.backends.mkldnn.is_available():  # CPUs: oneDNN's bf16 kernels
        bf16 = make_expo(config, device, mixed_precision=True)
        fill(bf16, 10_000)
        compare("bf16 denoiser (mixed_precision=True) in train()", train, lambda: bf16.train(utd, batch))
    return rows


# ------------------------------------------------------------------------------------------------ report


def print_training(training: dict[str, Any], compile_mode: str | None) -> None:
    wall, totals, env_steps = training["wall"], training["totals"], training["env_steps"]
    print(f"| full training, {env_steps} env steps, compile_mode={compile_mode!r} | seconds | share |")
    print("|---|---|---|")
    print(f"| total | {wall:.2f} | 100% |")
    for name, seconds in totals.items():
        print(f"| {name} | {seconds:.2f} | {seconds / wall:.0%} |")
    print(f"| env steps/s | {env_steps / wall:.2f} | |")
    print(f"| {training['peak_label']} | {training['peak_mib']:.0f} MiB | |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement, median (tiny 30, paper 3)")
    parser.add_argument("--env-steps", type=int, default=None, help="env steps of the full-training measurement")
    parser.add_argument("--utd", type=int, default=None, help="override the configuration's UTD (and policy delay)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument(
        "--matmul-precision",
        choices=["highest", "high", "medium"],
        default="highest",
        help="torch.set_float32_matmul_precision: 'high' lets a GPU use TF32 for float32 matmuls (as XLA does by default)",
    )
    parser.add_argument(
        "--compile-mode", default="default", help="torch.compile mode to measure ('reduce-overhead': CUDA graphs on a GPU)"
    )
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    th.set_float32_matmul_precision(args.matmul_precision)
    config = CONFIGS[args.config] if args.utd is None else {**CONFIGS[args.config], "utd": args.utd}
    repeats = args.repeats or (3 if args.config == "paper" else 30)
    env_steps = args.env_steps or (20 if args.config == "paper" and args.device == "cpu" else 200)
    device_name = th.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} thread(s)"
    print(
        f"# {args.config} config on {device_name}, torch {th.__version__}, float32 matmul precision "
        f"{args.matmul_precision!r}, {datetime.date.today()}\n"
    )
    print(f"config: {config}\n")

    learner = measure_learner(config, args.device, repeats)
    utd, model_flops = config["utd"], cost_model_flops(config)
    print(f"| learner, UTD {utd} (one env step) | EXPO | SB3 SAC | EXPO / SAC |")
    print("|---|---|---|---|")
    expo_s, sac_s, act_expo_s, act_sac_s = (learner[key] for key in ("expo_s", "sac_s", "act_expo_s", "act_sac_s"))
    print(f"| train({utd}) | {expo_s * 1e3:.1f} ms | {sac_s * 1e3:.1f} ms | {expo_s / sac_s:.2f}x |")
    print(f"| critic updates/s | {utd / expo_s:.0f} | {utd / sac_s:.0f} | |")
    print(f"| predict (one action) | {act_expo_s * 1e3:.2f} ms | {act_sac_s * 1e3:.2f} ms | {act_expo_s / act_sac_s:.1f}x |")
    print(f"| FLOPs per train() (counted) | {learner['flops'] / 1e9:.1f} GFLOP | | |")
    print(f"| cost model (docs/algorithm.md: TD-target denoiser rows) | {model_flops / 1e9:.1f} GFLOP | | |")
    print(f"| achieved | {learner['flops'] / learner['expo_s'] / 1e12:.3f} TFLOP/s | | |")
    sampler_rows = utd * config["batch_size"] * config["n"]
    sampler_s = learner["sampler_s"]
    print(
        f"| sampler alone, {sampler_rows} actions x T={config['t']} | {sampler_s * 1e3:.1f} ms, "
        f"{model_flops / sampler_s / 1e9:.0f} GFLOP/s | | |\n"
    )

    for compile_mode in [None] if args.no_compile else [None, args.compile_mode]:
        print_training(measure_training(config, args.device, env_steps, compile_mode), compile_mode)

    rows = measure_optimisations(config, args.device, repeats, None if args.no_compile else args.compile_mode)
    print("| optimisation | plain | ours | speed-up |")
    print("|---|---|---|---|")
    for name, plain, ours in rows:
        print(f"| {name} | {plain * 1e3:.2f} ms | {ours * 1e3:.2f} ms | {plain / ours:.2f}x |")


if __name__ == "__main__":
    main()
