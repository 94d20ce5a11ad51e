"""What XLA makes of EXPO's dominant cost on this machine: the TD-target sampler, jitted in JAX.

The authors' JAX code is not needed to answer the question the issue's reference table raises (how many
FLOP/s a jitted JAX implementation reaches on this CPU): at paper size one env step is 409,600 denoiser
rows, about 1.35 TFLOP (docs/algorithm.md, "Cost"), so the time of this sampler bounds the authors' update from
below on the same machine. This is our own JAX rendering of the same network (the MLP-ResNet denoiser
of :mod:`sb3_expo.diffusion`: Fourier time features, width 256, 3 pre-norm blocks of 4x width, SiLU),
the same sampler loop and the same batch (20 x 256 states x 8 chains), jitted once.

It needs JAX, which sb3_expo does not depend on (``pip install "jax[cpu]"`` in a separate environment):

    taskset -c 0 python benchmarks/jax_sampler.py            # one core, as the issue's reference table
    python benchmarks/speed.py --config paper ...            # our sampler, same rows, same machine

Prints the jit (compile) time, the median time of one env step's sampling and its GFLOP/s.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax
import jax.numpy as jnp

OBS_DIM, ACTION_DIM = 29, 8


def dense(key: jax.Array, n_in: int, n_out: int) -> dict:
    return {"w": jax.random.normal(key, (n_in, n_out)) / jnp.sqrt(n_in), "b": jnp.zeros(n_out)}


def init_denoiser(key: jax.Array, width: int, blocks: int, n_frequencies: int = 64) -> dict:
    keys = iter(jax.random.split(key, 8 + 2 * blocks))
    return {
        "frequencies": jax.random.normal(next(keys), (n_frequencies,)) * 0.2,
        "time_1": dense(next(keys), 2 * n_frequencies, width),
        "time_2": dense(next(keys), width, width),
        "input": dense(next(keys), ACTION_DIM + OBS_DIM + width, width),
        "blocks": [
            {
                "ln_scale": jnp.ones(width),
                "ln_bias": jnp.zeros(width),
                "up": dense(next(keys), width, 4 * width),
                "down": dense(next(keys), 4 * width, width),
            }
            for _ in range(blocks)
        ],
        "output": dense(next(keys), width, ACTION_DIM),
    }


def apply_dense(params: dict, x: jax.Array) -> jax.Array:
    return x @ params["w"] + params["b"]


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-5) * scale + bias


def denoiser(params: dict, obs: jax.Array, x: jax.Array, t_emb: jax.Array) -> jax.Array:
    h = apply_dense(params["input"], jnp.concatenate([x, obs, jnp.broadcast_to(t_emb, (x.shape[0], t_emb.shape[-1]))], -1))
    for block in params["blocks"]:
        z = layer_norm(h, block["ln_scale"], block["ln_bias"])
        h = h + apply_dense(block["down"], jax.nn.silu(apply_dense(block["up"], z)))
    return apply_dense(params["output"], jax.nn.silu(h))


def make_sampler(n_steps: int):
    t = jnp.arange(1, n_steps + 1, dtype=jnp.float32)
    betas = 1.0 - jnp.exp(-0.1 / n_steps - 0.5 * 9.9 * (2 * t - 1) / n_steps**2)
    alphas = 1.0 - betas
    alpha_bars = jnp.cumprod(alphas)

    @jax.jit
    def sample(params: dict, obs: jax.Array, key: jax.Array) -> jax.Array:
        angles = 2 * jnp.pi * jnp.arange(n_steps, dtype=jnp.float32)[:, None] * params["frequencies"]
        time_features = jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], -1)
        t_emb = apply_dense(params["time_2"], jax.nn.silu(apply_dense(params["time_1"], time_features)))
        keys = jax.random.split(key, n_steps + 1)
        x = jax.random.normal(keys[0], (obs.shape[0], ACTION_DIM))
        for k in reversed(range(n_steps)):
            eps = denoiser(params, obs, x, t_emb[k][None])
            x = (x - (1 - alphas[k]) / jnp.sqrt(1 - alpha_bars[k]) * eps) / jnp.sqrt(alphas[k])
            if k > 0:
                x = x + jnp.sqrt(betas[k]) * jax.random.normal(keys[n_steps - k], x.shape)
            x = jnp.clip(x, -1.0, 1.0)
        return x

    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20 * 256 * 8, help="sampled actions (paper: UTD x batch x N)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    params = init_denoiser(jax.random.PRNGKey(0), args.width, args.blocks)
    obs = jax.random.normal(jax.random.PRNGKey(1), (args.rows, OBS_DIM))
    sample = make_sampler(args.steps)
    start = time.perf_counter()
    sample(params, obs, jax.random.PRNGKey(2)).block_until_ready()
    jit_s = time.perf_counter() - start
    times = []
    for i in range(args.repeats):
        start = time.perf_counter()
        sample(params, obs, jax.random.PRNGKey(3 + i)).block_until_ready()
        times.append(time.perf_counter() - start)
    weights = (ACTION_DIM + OBS_DIM + args.width) * args.width + args.blocks * 8 * args.width**2 + args.width * ACTION_DIM
    flops = 2.0 * weights * args.rows * args.steps
    median = statistics.median(times)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, rows {args.rows}, T {args.steps}")
    print(f"jit {jit_s:.1f} s; sampling {median:.2f} s; {flops / 1e9:.0f} GFLOP; {flops / median / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
