"""
A newcomer's first hour: the README demo's flow at a tiny size leaves TensorBoard curves that never step back, with
exactly the keys docs/monitoring.md documents, and ``predict(deterministic=True)`` returns the same action each time.
"""

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.monitor import Monitor

from sb3_expo import EXPO
from sb3_expo.data import OfflineTransitions
from sb3_expo.evaluation import ForgettingMonitor

# The in-memory offline data is not saved with the model: attached again at load, or not needed to act.
pytestmark = pytest.mark.filterwarnings("ignore:This model's offline data is an in-memory:UserWarning")

MONITORING_PAGE = Path(__file__).parents[1] / "docs" / "monitoring.md"
EPISODE_STEPS = 20


class ReportsSuccess(gym.Wrapper):
    """Pendulum in 20-step episodes that end with ``info["is_success"]`` (pole up), as this project's tasks report."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info["is_success"] = bool(obs[0] > 0.9)
        return obs, reward, terminated, truncated, info


def pendulum() -> gym.Env:
    return ReportsSuccess(gym.make("Pendulum-v1", max_episode_steps=EPISODE_STEPS))


def offline_data(n: int = 200) -> OfflineTransitions:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 3))
    return OfflineTransitions(obs, rng.uniform(-2, 2, size=(n, 1)), rng.normal(size=n), obs + 0.1, np.zeros(n))


def documented_keys() -> set[str]:
    """Every TensorBoard key in the tables of the Monitoring page (the console-only keys are outside the tables)."""
    rows = [line for line in MONITORING_PAGE.read_text().splitlines() if line.startswith("|")]
    return set(re.findall(r"`([a-z_]+/[a-z_]+)`", "\n".join(rows)))


def scalar_steps(run: Path) -> dict[str, list[int]]:
    """The steps of every scalar key of a TensorBoard run, as written (TensorBoard's purge would hide steps back)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), purge_orphaned_data=False)
    events.Reload()
    return {key: [event.step for event in events.Scalars(key)] for key in events.Tags()["scalars"]}


def test_the_demo_flow_writes_every_documented_key_on_axes_that_never_step_back(tiny_kwargs, tmp_path):
    data = offline_data()
    model = EXPO("MlpPolicy", pendulum(), offline_dataset=data, tensorboard_log=str(tmp_path), seed=0, **tiny_kwargs)
    model.pretrain(12, critic_steps=0, log_interval=4)  # the demo: imitation alone first ...
    model.pretrain(0, critic_steps=6, log_interval=2)  # ... then the critics, in a second call
    monitors = [
        EvalCallback(Monitor(pendulum()), eval_freq=30, n_eval_episodes=1),
        ForgettingMonitor(Monitor(pendulum()), eval_freq=30, n_eval_episodes=1),
    ]
    model.learn(3 * EPISODE_STEPS, log_interval=1, callback=monitors)
    model.pretrain(0, critic_steps=2)  # after learning: after the last pretraining step, and no train/* leaks in
    model.learn(2 * EPISODE_STEPS, log_interval=1, reset_num_timesteps=False)  # continues the env-step axis
    model.learn(EPISODE_STEPS, log_interval=1)  # restarts it: SB3 opens a new run, as without pretrain()
    first_run = scalar_steps(tmp_path / "EXPO_1")

    model.save(tmp_path / "model.zip")
    loaded = EXPO.load(tmp_path / "model.zip", env=pendulum(), offline_dataset=data, tensorboard_log=str(tmp_path))
    loaded.pretrain(0, critic_steps=2)  # a loaded model goes on with the pretraining axis, here in a new run
    resumed_pretraining = scalar_steps(tmp_path / "EXPO_3")["pretrain/critic_loss"]

    for key, steps in first_run.items():
        assert steps == sorted(set(steps)), f"{key} steps back: {steps}"
    assert first_run["pretrain/base_loss"][:3] == [4, 8, 12]  # imitation steps, then the offline UTD blocks
    assert first_run["pretrain/critic_loss"] == [14, 16, 18, 20]
    assert resumed_pretraining == [22]
    assert min(first_run["train/critic_loss"]) > 0  # online learning only, on env steps
    assert max(first_run["train/critic_loss"]) <= 5 * EPISODE_STEPS
    assert set(first_run) == documented_keys()
    assert set(scalar_steps(tmp_path / "EXPO_2")) <= {key for key in first_run if not key.startswith("pretrain/")}


def tiny_model(tiny_kwargs) -> EXPO:
    """Pretrained, and acting with the trained base (EMA rate 1): actions spread over the data's, not at the bounds."""
    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=offline_data(), seed=0, base_ema_rate=1.0, **tiny_kwargs)
    return model.pretrain(200, critic_steps=4)


def test_deterministic_predict_gives_one_action_per_observation(tiny_kwargs, tmp_path):
    model = tiny_model(tiny_kwargs)
    obs = np.random.default_rng(1).normal(size=(16, 3)).astype(np.float32)
    batch = model.predict(obs, deterministic=True)[0]
    assert len(np.unique(batch)) == len(obs)
    alone = model.predict(obs[0], deterministic=True)[0]
    for seed in range(3):
        th.manual_seed(seed)  # the global RNG plays no part
        np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], batch)
        np.testing.assert_array_equal(model.predict(obs[0], deterministic=True)[0], alone)
    # A row's action does not depend on the rest of the batch (up to the float rounding of other matrix shapes).
    np.testing.assert_allclose(alone, batch[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(obs[::-1].copy(), deterministic=True)[0], batch[::-1], rtol=1e-5, atol=1e-6)

    model.save(tmp_path / "model.zip")
    loaded = EXPO.load(tmp_path / "model.zip", offline_dataset=None)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], batch)


def test_deterministic_draws_are_each_states_own(tiny_kwargs):
    """Shared draws made the same error at every state (docs/algorithm.md): each state gets its own fixed draws."""
    policy = tiny_model(tiny_kwargs).policy
    states = th.tensor([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    noise = policy.fixed_noise(states)
    n, k = policy.n_base_samples, policy.n_edit_samples
    assert th.equal(noise.base[:, :n], noise.base[:, n : 2 * n]) and th.equal(noise.edit[:k], noise.edit[k : 2 * k])
    assert not th.equal(noise.base[:, :n], noise.base[:, 2 * n :]) and not th.equal(noise.edit[:k], noise.edit[2 * k :])
    assert th.equal(policy.fixed_noise(states[2:]).base, noise.base[:, 2 * n :])  # the same alone as in a batch


def test_stochastic_predict_still_varies(tiny_kwargs):
    model = tiny_model(tiny_kwargs)
    obs = np.zeros(3, dtype=np.float32)
    actions = {float(model.predict(obs, deterministic=False)[0][0]) for _ in range(10)}
    assert len(actions) > 1


def test_the_first_compiled_call_is_announced_once(capsys, compiling):
    """The first call of a graph compiles it (up to a minute): the user is told then, once, and how to skip it."""
    from sb3_expo.backend import CompilationNotice, compile_graph

    notice = CompilationNotice("default", chosen_by_auto=True, verbose=1, graphs="a test graph")
    graph = compile_graph(lambda x: x * 2 + 1, "default", th.device("cpu"), notice=notice)
    assert capsys.readouterr().out == ""  # binding compiles nothing
    graph(th.ones(3))
    first = capsys.readouterr().out
    assert "compiling a test graph" in first and "compile_mode=None" in first and 'compile_mode="auto"' in first
    graph(th.ones(3))
    assert capsys.readouterr().out == ""
    quiet = CompilationNotice("default", chosen_by_auto=False, verbose=0)
    quiet()
    assert capsys.readouterr().out == "" and quiet.given


def test_a_runs_curves_are_drawn_from_its_event_files(tmp_path):
    """benchmarks/plot_run.py draws the panels of the keys a run wrote (the Monitoring page's picture)."""
    from torch.utils.tensorboard import SummaryWriter

    from benchmarks.plot_run import plot_run, read_scalars

    writer = SummaryWriter(str(tmp_path / "EXPO_1"))
    for step in range(5):
        writer.add_scalar("pretrain/base_loss", 1.0 / (step + 1), step)
        writer.add_scalar("rollout/success_rate", step / 4, 100 * step)
    writer.close()
    scalars = read_scalars(tmp_path / "EXPO_1")
    assert scalars["rollout/success_rate"] == ([0, 100, 200, 300, 400], [0.0, 0.25, 0.5, 0.75, 1.0])
    png = plot_run(scalars, tmp_path / "run.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
