"""
A fingerprint of EXPO's numbers: the sha256 of every parameter after a fixed tiny run, to show that a
refactor changed no number (run it on both commits and compare the lines).

    python benchmarks/fingerprint.py            # pretrain, critic pretraining, learn: one hash per stage

On synthetic offline data and Pendulum-v1, one CPU thread: imitation (20 steps), critic pretraining
(7 UTD blocks), online learning (150 env steps, UTD 3 with a policy update every 2 critic updates, so the
candidate stretches cross train() calls), then one deterministic action.
"""

import argparse
import hashlib

import numpy as np
import torch as th

from sb3_expo import EXPO
from sb3_expo.data import OfflineTransitions


def digest(model: EXPO) -> str:
    """sha256 (16 hex digits) of the policy's state dict and log α."""
    sha = hashlib.sha256()
    for name, tensor in sorted(model.policy.state_dict().items()):
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().numpy().tobytes())
    if model.log_ent_coef is not None:
        sha.update(model.log_ent_coef.detach().cpu().numpy().tobytes())
    return sha.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compile-mode", default=None, help="EXPO's compile_mode (default: None, eager; the hashes above)")
    compile_mode = parser.parse_args().compile_mode
    th.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = 500
    data = OfflineTransitions(
        rng.normal(size=(n, 3)), rng.uniform(-2, 2, size=(n, 1)), rng.normal(size=n), rng.normal(size=(n, 3)),
        (rng.uniform(size=n) < 0.05).astype(float),
    )  # fmt: skip
    model = EXPO(
        "MlpPolicy", "Pendulum-v1", offline_dataset=data, seed=3, learning_starts=30, batch_size=16, gradient_steps=3,
        policy_delay=2, n_critics=3, critic_subset_size=2, n_base_samples=3, n_edit_samples=2, diffusion_steps=4,
        reward_shift=-0.5, policy_kwargs=dict(net_arch=[16, 16], denoiser_width=16, denoiser_blocks=1),
        base_imitates="all", edit_scale=0.7, compile_mode=compile_mode,  # the paper's recipe: the hashes of earlier commits
    )  # fmt: skip
    model.pretrain(20, critic_steps=0)
    print("pretrain", digest(model))
    model.pretrain(0, critic_steps=7)
    print("critic-pretrain", digest(model))
    model.learning_starts = 30  # pretrain() sets it to 0; the hashes were recorded with 30 random steps first
    model.learn(150)
    print("learn", digest(model), model._n_updates, model._n_policy_updates, model._n_base_updates)
    print("action", model.predict(np.zeros(3, dtype=np.float32), deterministic=True)[0])


if __name__ == "__main__":
    main()
