"""
Exact resume: a run interrupted after a checkpoint and resumed in a new process ends with the same
parameters, bit for bit, as the run that was never interrupted (sb3_expo.checkpoints).
"""

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_expo import EXPO
from sb3_expo.checkpoints import CheckpointCallback, latest_checkpoint, list_checkpoints, remaining_timesteps, resume

# One run of a tiny EXPO on Pendulum with 50-step episodes, in its own process. "full" runs 250 env steps;
# "interrupted" the same, but stops at step 130 (a crash after the checkpoint at 100); "resume" continues
# the newest checkpoint to 250. A linear learning-rate schedule, OU action noise, the random warm-up and
# TensorBoard make every piece of state matter.
RUN = """
import sys
import gymnasium as gym, torch as th
th.set_num_threads(1)
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule
from sb3_expo import EXPO
from sb3_expo.checkpoints import CheckpointCallback, remaining_timesteps, resume

mode, folder, tensorboard, out = sys.argv[1:]
TINY = dict(learning_starts=50, batch_size=16, gradient_steps=2, policy_delay=2, n_critics=3, n_base_samples=3,
            n_edit_samples=2, diffusion_steps=4, policy_kwargs=dict(net_arch=[16, 16], denoiser_width=16, denoiser_blocks=1))
env = gym.make("Pendulum-v1", max_episode_steps=50)
checkpoints = CheckpointCallback(50, folder, keep_last=None)


class Crash(BaseCallback):
    def _on_step(self):
        return self.num_timesteps < 130


if mode == "resume":
    model = resume(folder, env, device="cpu")
    print("resumed at", model.num_timesteps, flush=True)
    model.learn(remaining_timesteps(model), callback=checkpoints, reset_num_timesteps=False)
else:
    model = EXPO("MlpPolicy", env, seed=0, device="cpu", learning_rate=LinearSchedule(1e-3, 1e-4, 1.0),
                 action_noise=OrnsteinUhlenbeckActionNoise(th.zeros(1).numpy(), 0.1 + th.zeros(1).numpy()),
                 tensorboard_log=tensorboard, **TINY)
    model.learn(250, callback=[checkpoints, Crash()] if mode == "interrupted" else checkpoints)
buffer = model.replay_buffer
th.save(dict(
    policy=model.policy.state_dict(),
    optimizers=[o.state_dict() for o in (model.base.optimizer, model.edit_actor.optimizer, model.critic.optimizer,
                                         model.ent_coef_optimizer)],
    log_ent_coef=model.log_ent_coef.detach().clone(),
    counters=[model.num_timesteps, model._n_updates, model._n_policy_updates, model._n_base_updates, model._episode_num],
    episodes=[info["r"] for info in model.ep_info_buffer],
    buffer=[th.as_tensor(buffer.observations[:buffer.pos]), th.as_tensor(buffer.actions[:buffer.pos]),
            th.as_tensor(buffer.rewards[:buffer.pos])],
    last_obs=th.as_tensor(model._last_obs),
    logger_dir=model.logger.get_dir(),
), out)
"""


def run(*args, cwd):
    result = subprocess.run([sys.executable, "-c", RUN, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def assert_identical(a, b, where=""):
    if isinstance(a, th.Tensor):
        assert th.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a} != {b}"


@pytest.mark.slow  # three (two) processes, ~25 s
def test_a_run_resumed_in_a_new_process_ends_bit_identical_to_the_uninterrupted_run(tmp_path):
    run("full", tmp_path / "full", tmp_path / "tb_full", tmp_path / "full.pt", cwd=tmp_path)
    run("interrupted", tmp_path / "ckpt", tmp_path / "tb", tmp_path / "interrupted.pt", cwd=tmp_path)
    assert [path.name for path in list_checkpoints(tmp_path / "ckpt")] == ["expo_50_steps", "expo_100_steps"]
    stdout = run("resume", tmp_path / "ckpt", "-", tmp_path / "resumed.pt", cwd=tmp_path)
    assert "resumed at 100" in stdout

    full, resumed = th.load(tmp_path / "full.pt", weights_only=False), th.load(tmp_path / "resumed.pt", weights_only=False)
    assert full["counters"][0] == 250
    interrupted = th.load(tmp_path / "interrupted.pt", weights_only=False)
    assert interrupted["counters"][0] == 130  # the crash: the interrupted run had gone past its checkpoint
    for key in ("policy", "optimizers", "log_ent_coef", "counters", "episodes", "buffer", "last_obs"):
        assert_identical(full[key], resumed[key], key)
    # TensorBoard: the resumed process wrote into the interrupted run's folder, not a new EXPO_2.
    assert resumed["logger_dir"] == str(tmp_path / "tb" / "EXPO_1") and not (tmp_path / "tb" / "EXPO_2").exists()
    assert len(list((tmp_path / "tb" / "EXPO_1").glob("events.out.tfevents.*"))) == 2
    # The resumed run went on checkpointing in the same folder.
    assert [path.name for path in list_checkpoints(tmp_path / "ckpt")][-1] == "expo_200_steps"  # none at the end of learn()


def short_pendulum():
    return gym.make("Pendulum-v1", max_episode_steps=30)


def test_checkpoints_are_taken_at_episode_starts_and_the_last_ones_kept(tmp_path, tiny_kwargs):
    model = EXPO("MlpPolicy", short_pendulum(), seed=0, **{**tiny_kwargs, "learning_starts": 1000})  # random acting only
    (tmp_path / ".expo_1_steps.99.tmp").mkdir()  # left by a process killed while saving
    model.learn(130, callback=CheckpointCallback(20, tmp_path, keep_last=2))
    # Due at 20, 50, 80, 110 steps; taken at the next episode start (every 30 steps).
    assert [path.name for path in list_checkpoints(tmp_path)] == ["expo_90_steps", "expo_120_steps"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["expo_120_steps", "expo_90_steps"]
    assert latest_checkpoint(tmp_path).name == "expo_120_steps"
    (tmp_path / "expo_150_steps").mkdir()  # incomplete: not a checkpoint
    (tmp_path / "expo_150_steps" / "model.zip").write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "expo_120_steps"
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        latest_checkpoint(tmp_path / "expo_150_steps")


class DrawsBeforeReset(gym.Wrapper):
    """An env whose reset does not follow from the saved generator alone."""

    def reset(self, **kwargs):
        self.np_random.random()
        return self.env.reset(**kwargs)


def test_resume_refuses_an_env_it_cannot_put_back(tmp_path, tiny_kwargs):
    model = EXPO("MlpPolicy", short_pendulum(), seed=0, **{**tiny_kwargs, "learning_starts": 1000})
    model.learn(40, callback=CheckpointCallback(20, tmp_path))
    resumed = resume(tmp_path, short_pendulum(), device="cpu")
    assert resumed.num_timesteps == 30 and remaining_timesteps(resumed) == 10
    assert np.array_equal(resumed._last_obs, resumed.get_env().buf_obs[None])
    with pytest.raises(RuntimeError, match="did not return the checkpoint's observation"):
        resume(tmp_path, DrawsBeforeReset(short_pendulum()), device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = resume(tmp_path, DrawsBeforeReset(short_pendulum()), device="cpu", strict=False)
    assert any("no longer identical" in str(warning.message) for warning in caught)
    model.learn(remaining_timesteps(model), reset_num_timesteps=False)
    assert model.num_timesteps == 40


@pytest.mark.slow  # three (two) processes, ~25 s
def test_sb3_expo_train_resume_continues_a_run_exactly(tmp_path):
    """``sb3-expo train --save-freq``, then ``--resume`` from its first checkpoint: the same final model."""
    pytest.importorskip("rl_zoo3")
    tiny = [
        "batch_size:16",
        "n_critics:2",
        "n_base_samples:2",
        "n_edit_samples:2",
        "diffusion_steps:2",
        "gradient_steps:1",
        "policy_delay:1",
        "learning_starts:50",
        "policy_kwargs:dict(net_arch=[16],denoiser_width=16,denoiser_blocks=1)",
    ]
    command = [sys.executable, "-m", "sb3_expo.zoo.cli", "train", "--env", "Pendulum-v1",
               "--env-kwargs", "max_episode_steps:50", "-n", "300", "--seed", "0", "--num-threads", "1",
               "--device", "cpu", "--eval-freq", "-1", "-f", "logs"]  # fmt: skip

    def train(*extra):
        arguments = [*command, *extra, "-params", *tiny]
        result = subprocess.run(arguments, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    train("--save-freq", "100")
    first = tmp_path / "logs" / "expo" / "Pendulum-v1_1"
    assert [path.name for path in list_checkpoints(first / "checkpoints")] == ["expo_100_steps", "expo_200_steps"]
    stdout = train("--resume", str(first / "checkpoints" / "expo_100_steps"))
    assert "Resumed at 100 env steps: 200 more to reach 300" in stdout
    full = EXPO.load(first / "Pendulum-v1.zip", device="cpu")
    resumed = EXPO.load(tmp_path / "logs" / "expo" / "Pendulum-v1_2" / "Pendulum-v1.zip", device="cpu")
    assert resumed.num_timesteps == full.num_timesteps == 300
    for (name, a), b in zip(full.policy.state_dict().items(), resumed.policy.state_dict().values()):
        assert th.equal(a, b), name
    assert not (tmp_path / "logs" / "tensorboard" / "Pendulum-v1" / "EXPO_2").exists()  # the same TensorBoard run


def test_resume_with_two_envs_and_vec_normalize_continues_exactly(tmp_path, tiny_kwargs):
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    def make_env():
        return VecNormalize(DummyVecEnv([short_pendulum, short_pendulum]))

    class Crash(BaseCallback):
        def _on_step(self):
            return self.num_timesteps < 80

    kwargs = {**tiny_kwargs, "learning_starts": 20}
    full = EXPO("MlpPolicy", make_env(), seed=1, **kwargs).learn(120, callback=CheckpointCallback(40, tmp_path / "a"))
    EXPO("MlpPolicy", make_env(), seed=1, **kwargs).learn(120, callback=[CheckpointCallback(40, tmp_path / "b"), Crash()])
    assert latest_checkpoint(tmp_path / "b").name == "expo_60_steps"  # 2 envs x 30-step episodes
    th.manual_seed(123), np.random.seed(123)  # whatever ran in between: resume puts every generator back
    resumed = resume(tmp_path / "b", make_env(), device="cpu")
    resumed.learn(remaining_timesteps(resumed), reset_num_timesteps=False)
    for (name, a), b in zip(full.policy.state_dict().items(), resumed.policy.state_dict().values()):
        assert th.equal(a, b), name
    assert np.array_equal(full.get_env().obs_rms.mean, resumed.get_env().obs_rms.mean)
    assert np.array_equal(full.replay_buffer.observations, resumed.replay_buffer.observations)


class DictPendulum(gym.ObservationWrapper):
    """Pendulum (30-step episodes) with Dict observations, and info["is_success"] when it ends upright."""

    def __init__(self):
        super().__init__(short_pendulum())
        self.observation_space = gym.spaces.Dict(
            {"angle": gym.spaces.Box(-1, 1, (2,), np.float32), "speed": gym.spaces.Box(-8, 8, (1,), np.float32)}
        )

    def observation(self, observation):
        return {"angle": observation[:2], "speed": observation[2:]}

    def step(self, action):
        observation, reward, terminated, truncated, info = super().step(action)
        return observation, reward, terminated, truncated, {**info, "is_success": bool(observation["angle"][0] > 0)}


@pytest.mark.filterwarnings("ignore:This model's offline data")  # in-memory offline data: passed again to resume
def test_resume_with_dict_observations_offline_data_and_two_envs_continues_exactly(tmp_path, tiny_kwargs):
    """The offline-mixing buffer (Dict observations, successful episodes, offline data re-attached) resumes exactly."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_expo.buffers import DictOfflineReplayBuffer
    from sb3_expo.data import OfflineTransitions

    rng = np.random.default_rng(0)
    observations = {"angle": rng.uniform(-1, 1, (64, 2)), "speed": rng.uniform(-8, 8, (64, 1))}
    data = OfflineTransitions(observations, rng.uniform(-2, 2, (64, 1)), rng.normal(size=64), observations, np.zeros(64))

    class Crash(BaseCallback):
        def _on_step(self):
            return self.num_timesteps < 80

    def make(crash=False):
        model = EXPO("MultiInputPolicy", DummyVecEnv([DictPendulum, DictPendulum]), offline_dataset=data, reward_shift=-1.0,
                     seed=1, **{**tiny_kwargs, "learning_starts": 20})  # fmt: skip
        checkpoints = CheckpointCallback(40, tmp_path / ("b" if crash else "a"))
        return model.learn(120, callback=[checkpoints, Crash()] if crash else checkpoints)

    full = make()
    make(crash=True)
    assert latest_checkpoint(tmp_path / "b").name == "expo_60_steps"
    with pytest.raises(ValueError, match="taken with 2 envs, this env has 1"):
        resume(tmp_path / "b", DummyVecEnv([DictPendulum]), device="cpu", offline_dataset=data)
    resumed = resume(tmp_path / "b", DummyVecEnv([DictPendulum, DictPendulum]), device="cpu", offline_dataset=data)
    assert isinstance(resumed.replay_buffer, DictOfflineReplayBuffer) and resumed.replay_buffer.offline_size == 64
    resumed.learn(remaining_timesteps(resumed), reset_num_timesteps=False)
    for (name, a), b in zip(full.policy.state_dict().items(), resumed.policy.state_dict().values()):
        assert th.equal(a, b), name
    for key in ("angle", "speed"):
        assert np.array_equal(full.replay_buffer.observations[key], resumed.replay_buffer.observations[key])
    assert full.replay_buffer.successful.any() and np.array_equal(
        full.replay_buffer.successful, resumed.replay_buffer.successful
    )
