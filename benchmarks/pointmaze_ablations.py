"""Ablations of the PointMaze demo: one configuration per call, the success of three actors along the way.

The demo (``examples/offline_to_online_pointmaze.py``) with one or more settings changed. After each stage
(imitation, critic pretraining if any, every ``--eval-every`` online env steps) it evaluates three actors
on the same episodes and appends a JSON row to ``--out``:

- ``det``: EXPO's on-the-fly action with ``deterministic=True`` (what the demo prints);
- ``sto``: the stochastic on-the-fly action (what the authors' code evaluates);
- ``base``: the EMA base policy alone (``sb3_expo.evaluation.BasePolicyActor``): it shows whether the base
  itself drifts while it imitates the online data.

    python benchmarks/pointmaze_ablations.py --seed 0 --tag baseline
    python benchmarks/pointmaze_ablations.py --seed 0 --critic-pretrain-steps 0 --tau 0.005 --tag paper
    python benchmarks/pointmaze_ablations.py --seed 0 --expert-fraction 0.3 --critic-subset-size 5 --tag sub5

The rows measured for benchmarks/README.md are in ``benchmarks/results/pointmaze_ablations.jsonl``.
"""

import argparse
import json
import os
import time

import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor

from sb3_expo import EXPO
from sb3_expo.envs import make_pointmaze_env
from sb3_expo.evaluation import BasePolicyActor, evaluate_success_rate
from sb3_expo.tasks.pointmaze import DEFAULT_EXPERT_FRACTION, POINTMAZE_DATASET_ID, build_pointmaze_dataset


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", required=True, help="name of the configuration in the output rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--expert-fraction", type=float, default=DEFAULT_EXPERT_FRACTION, help="share of expert episodes")
    parser.add_argument("--pretrain-steps", type=int, default=3000)
    parser.add_argument("--critic-pretrain-steps", type=int, default=2000)
    parser.add_argument("--online-steps", type=int, default=5000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    # EXPO settings; the defaults are the demo's.
    parser.add_argument("--edit-scale", type=float, default=0.5)
    parser.add_argument("--tau", type=float, default=0.02)
    parser.add_argument("--utd", type=int, default=2, help="gradient_steps (and policy_delay unless --policy-delay)")
    parser.add_argument("--policy-delay", type=int, default=None, help="critic updates per policy update (default: --utd)")
    parser.add_argument("--n-samples", type=int, default=4, help="N = K")
    parser.add_argument("--critic-subset-size", type=int, default=2)
    parser.add_argument("--reward-shift", type=float, default=-1.0)
    parser.add_argument(
        "--init",
        choices=["reference", "torch"],
        default="reference",
        help="reference: Xavier/LeCun as the authors' code (the default); torch: PyTorch's default Linear init "
        "in the denoiser and the edit actor (the init-only A/B)",
    )
    parser.add_argument("--out", default="benchmarks/results/pointmaze_ablations.jsonl")
    return parser.parse_args()


def dataset_id(expert_fraction: float) -> str:
    """The demo's dataset, or one with another share of expert episodes (built once, locally)."""
    if expert_fraction == DEFAULT_EXPERT_FRACTION:
        build_pointmaze_dataset()
        return POINTMAZE_DATASET_ID
    name = f"sb3_expo/pointmaze-umaze-expert{round(expert_fraction * 100)}-v1"
    build_pointmaze_dataset(name, expert_fraction=expert_fraction)
    return name


def reset_to_torch_default_init(model: EXPO) -> None:
    """Re-initialise every Linear layer of the denoiser and the edit actor as ``nn.Linear`` does by default.

    Before the alignment with the reference, this was the package's init (LayerNorm eps aside); the ablation
    measures whether the change mattered.
    """
    policy = model.policy
    for network in (policy.base, policy.edit_actor):
        for module in network.modules():
            if isinstance(module, th.nn.Linear):
                module.reset_parameters()
    policy.base_ema.load_state_dict(policy.base.state_dict())


def main() -> None:
    args = parse_args()
    th.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = EXPO(
        "MultiInputPolicy",
        make_pointmaze_env(),
        offline_dataset=dataset_id(args.expert_fraction),
        seed=args.seed,
        offline_ratio=0.5,
        reward_shift=args.reward_shift,
        edit_scale=args.edit_scale,
        tau=args.tau,
        learning_starts=0,
        batch_size=128,
        gradient_steps=args.utd,
        policy_delay=args.policy_delay or args.utd,
        n_critics=5,
        critic_subset_size=args.critic_subset_size,
        n_base_samples=args.n_samples,
        n_edit_samples=args.n_samples,
        policy_kwargs=dict(net_arch=[64, 64], denoiser_width=64, denoiser_blocks=2),
    )
    if args.init == "torch":
        reset_to_torch_default_init(model)
    eval_env = Monitor(make_pointmaze_env())
    eval_env.reset(seed=10_000 + args.seed)
    start = time.perf_counter()

    def record(stage: str, env_steps: int) -> None:
        n = args.eval_episodes
        row = dict(
            tag=args.tag,
            seed=args.seed,
            stage=stage,
            env_steps=env_steps,
            det=evaluate_success_rate(model, eval_env, n, deterministic=True),
            sto=evaluate_success_rate(model, eval_env, n, deterministic=False),
            base=evaluate_success_rate(BasePolicyActor(model), eval_env, n),
            wall_s=round(time.perf_counter() - start),
            settings={key: value for key, value in vars(args).items() if key not in ("tag", "seed", "out")},
        )
        print(json.dumps(row), flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "a") as file:
            file.write(json.dumps(row) + "\n")

    model.pretrain(args.pretrain_steps)
    record("imitation", 0)
    if args.critic_pretrain_steps > 0:
        model.pretrain(args.critic_pretrain_steps, critic=True)
        record("critic pretraining", 0)

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_every == 0:
                record("online", self.num_timesteps)
            return True

    model.learn(args.online_steps, callback=Evaluate())


if __name__ == "__main__":
    main()
