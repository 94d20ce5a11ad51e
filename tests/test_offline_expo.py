"""EXPO with offline data: dataset named by id/path, mixing, pretraining, save/load with the data re-attached."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_expo import EXPO
from sb3_expo.buffers import OfflineReplayBuffer
from sb3_expo.data import OfflineTransitions, load_offline_dataset

h5py = pytest.importorskip("h5py")


def write_pendulum_d4rl(path, n_rows: int, episode_length: int = 50, seed: int = 0) -> None:
    """A legacy-D4RL-layout file of real Pendulum-v1 transitions (random actions, timeouts every episode)."""
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    columns = {key: [] for key in ("observations", "actions", "rewards", "terminals", "timeouts")}
    for i in range(n_rows):
        action = rng.uniform(-2, 2, size=1).astype(np.float32)
        next_obs, reward, _, _, _ = env.step(action)
        timeout = (i + 1) % episode_length == 0
        for key, value in zip(columns, (obs, action, reward, False, timeout)):
            columns[key].append(value)
        obs = env.reset()[0] if timeout else next_obs
    with h5py.File(path, "w") as file:
        for key, values in columns.items():
            file[key] = np.asarray(values)


@pytest.fixture
def pendulum_file(tmp_path):
    path = tmp_path / "pendulum.hdf5"
    write_pendulum_d4rl(path, 300)
    return path


def test_offline_dataset_by_path_is_mixed_into_batches(tiny_kwargs, pendulum_file):
    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=str(pendulum_file), **tiny_kwargs)
    assert isinstance(model.replay_buffer, OfflineReplayBuffer)
    assert model.replay_buffer.offline_size == 300 - 300 // 50  # timeout steps have no next observation
    assert model.replay_buffer.offline_ratio == 0.5
    model.learn(80)
    batch = model.replay_buffer.sample(4 * 16)
    offline_obs = th.as_tensor(model._offline_transitions.observations)
    is_offline = (batch.observations.unsqueeze(1) == offline_obs.unsqueeze(0)).all(-1).any(-1)
    assert is_offline.view(4, 16).sum(dim=1).tolist() == [8, 8, 8, 8]


def test_reward_transform_applies_without_offline_data(tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", reward_shift=-1.0, reward_scale=2.0, **tiny_kwargs)
    model.learn(60)
    buffer = model.replay_buffer
    np.random.seed(0)
    sampled = buffer.sample(8).rewards.flatten()
    np.random.seed(0)
    raw = th.as_tensor(buffer.rewards[np.random.randint(0, buffer.size(), 8), 0])
    th.testing.assert_close(sampled, raw * 2.0 - 1.0)


def test_pretrain_fits_the_offline_actions(tiny_kwargs, tmp_path, pendulum_file):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=pendulum_file, tensorboard_log=str(tmp_path), **tiny_kwargs)
    ema_before = [p.clone() for p in model.base_ema.parameters()]
    model.pretrain(300, critic_steps=0, log_interval=100, progress_bar=True)
    assert model._n_base_updates == 300
    assert any(not th.equal(a, b) for a, b in zip(ema_before, model.base_ema.parameters()))
    model.learn(210, log_interval=1)  # one episode: continues in the same TensorBoard run
    events = EventAccumulator(str(tmp_path / "EXPO_1"))
    events.Reload()
    losses = [e.value for e in events.Scalars("pretrain/base_loss")]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert {"rollout/ep_rew_mean", "train/critic_loss"} <= set(events.Tags()["scalars"])


def test_pretrain_needs_offline_data(tiny_kwargs):
    with pytest.raises(ValueError, match="offline_dataset"):
        EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs).pretrain(10)


def test_zip_size_does_not_grow_with_the_dataset(tiny_kwargs, tmp_path):
    sizes = []
    for n_rows in (100, 5000):
        folder = tmp_path / f"{n_rows:05d}"
        folder.mkdir()
        write_pendulum_d4rl(folder / "data.hdf5", n_rows)
        model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=str(folder / "data.hdf5"), seed=0, **tiny_kwargs)
        model.save(folder / "model.zip")
        model.save_replay_buffer(folder / "buffer.pkl")
        sizes.append(((folder / "model.zip").stat().st_size, (folder / "buffer.pkl").stat().st_size))
    assert abs(sizes[0][0] - sizes[1][0]) < 200  # zip compression varies by a few bytes
    assert sizes[0][1] == sizes[1][1]


def test_save_load_continue_with_the_dataset_reattached(tiny_kwargs, tmp_path, pendulum_file):
    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=str(pendulum_file), **tiny_kwargs)
    model.pretrain(20)
    model.learn(80)
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")

    loaded = EXPO.load(tmp_path / "model.zip", env=gym.make("Pendulum-v1"), device="cpu")
    assert loaded.replay_buffer.offline_size == model.replay_buffer.offline_size
    assert loaded._n_base_updates == model._n_base_updates
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert loaded.replay_buffer.size() == 80 - 50 + 50  # online transitions are back ...
    assert loaded.replay_buffer.offline_size == model.replay_buffer.offline_size  # ... and the offline ones too
    loaded.learn(40, reset_num_timesteps=False)
    assert loaded.num_timesteps == 120

    # A dataset that moved is named again at load time.
    moved = tmp_path / "moved.hdf5"
    pendulum_file.rename(moved)
    hint = r"(?s)pendulum\.hdf5.*offline_dataset=<its new path or id>.*offline_dataset=None"
    with pytest.raises(FileNotFoundError, match=hint):
        EXPO.load(tmp_path / "model.zip", device="cpu")
    acting_only = EXPO.load(tmp_path / "model.zip", device="cpu", offline_dataset=None)
    assert acting_only.predict(np.zeros(3, np.float32))[0].shape == (1,)
    relocated = EXPO.load(tmp_path / "model.zip", device="cpu", offline_dataset=str(moved))
    assert relocated.replay_buffer.offline_size == model.replay_buffer.offline_size


def test_in_memory_transitions_are_not_saved(tiny_kwargs, tmp_path, pendulum_file):
    transitions = load_offline_dataset(pendulum_file)
    assert isinstance(transitions, OfflineTransitions)
    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=transitions, **tiny_kwargs)
    model.save(tmp_path / "model.zip")
    loaded = EXPO.load(tmp_path / "model.zip", device="cpu")
    assert loaded.offline_dataset is None and loaded.replay_buffer.offline_size == 0
    loaded.attach_offline_data(transitions)
    assert loaded.replay_buffer.offline_size == len(transitions)


def test_dataset_that_does_not_fit_the_env_is_rejected(tiny_kwargs, pendulum_file):
    with pytest.raises(ValueError, match="observation"):
        EXPO("MlpPolicy", "MountainCarContinuous-v0", offline_dataset=str(pendulum_file), **tiny_kwargs)


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("not a dataset", ValueError, "Unknown offline dataset"),
        ("missing/file.hdf5", FileNotFoundError, "missing/file.hdf5"),
        ("D4RL/pen/not-downloaded-v0", FileNotFoundError, "minari download D4RL/pen/not-downloaded-v0"),
        ("sb3_expo/not-built-v0", FileNotFoundError, "python -m sb3_expo.tasks sb3_expo/not-built-v0"),
    ],
)
def test_bad_dataset_names_give_clear_errors(tiny_kwargs, tmp_path, monkeypatch, source, error, message):
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(error, match=message):
        EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=source, **tiny_kwargs)


def test_custom_buffer_that_cannot_mix_is_rejected(tiny_kwargs, pendulum_file):
    from stable_baselines3.common.buffers import ReplayBuffer

    with pytest.raises(ValueError, match="cannot mix offline data"):
        EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=str(pendulum_file), replay_buffer_class=ReplayBuffer, **tiny_kwargs)


def test_pretraining_learning_rate_follows_its_schedule_at_every_step(tiny_kwargs, pendulum_file):
    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=pendulum_file, policy_lr_decay_steps=100, **tiny_kwargs)
    model.pretrain(50, critic_steps=0, log_interval=1000)  # no log record in between: the rate must still follow the schedule
    # the rate of the last step (step 49 of a cosine over 100 base updates)
    assert model.base.optimizer.param_groups[0]["lr"] == pytest.approx(3e-4 * 0.5 * (1 + np.cos(np.pi * 49 / 100)))


def test_critic_pretraining_trains_every_network_on_offline_data_only(tiny_kwargs, pendulum_file):
    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=pendulum_file, **tiny_kwargs)
    model.pretrain(20, critic_steps=0)
    critic_before = [p.clone() for p in model.critic.parameters()]
    actor_before = [p.clone() for p in model.edit_actor.parameters()]
    sampled = []
    model.replay_buffer.sample = lambda *args, **kwargs: sampled.append(args)  # online sampling must not be used
    model.pretrain(5, critic=True)
    assert sampled == [] and model.replay_buffer.size() == 0
    # one UTD block per step: gradient_steps critic updates, a policy update every policy_delay of them
    assert model._n_updates == 5 * tiny_kwargs["gradient_steps"]
    assert model._n_policy_updates == 5 * tiny_kwargs["gradient_steps"] // tiny_kwargs["policy_delay"]
    assert model._n_base_updates == 20 + model._n_policy_updates
    assert all(not th.equal(a, b) for a, b in zip(critic_before, model.critic.parameters()))
    assert any(not th.equal(a, b) for a, b in zip(actor_before, model.edit_actor.parameters()))
    del model.replay_buffer.sample
    model.learn(60)  # online training continues from the warmed-up critics


def test_base_policy_actor_acts_with_one_ema_base_sample(tiny_kwargs, pendulum_file):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_expo.evaluation import BasePolicyActor

    model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=pendulum_file, **tiny_kwargs).pretrain(20)
    actor = BasePolicyActor(model)
    obs = np.array([1.0, 0.0, 0.5], np.float32)
    th.manual_seed(3)
    action, state = actor.predict(obs)
    th.manual_seed(3)
    features = th.as_tensor(obs).unsqueeze(0)
    with th.no_grad():
        expected = model.policy.unscale_action(model.base_ema.sample(features).numpy())[0]
    assert state is None and action.shape == (1,) and np.allclose(action, expected)
    assert np.all(np.abs(action) <= 2.0)  # Pendulum's bounds: the base's [-1, 1] sample in env units
    batch, _ = actor.predict(DummyVecEnv([lambda: gym.make("Pendulum-v1")] * 3).reset())
    assert batch.shape == (3, 1)


def test_buffer_options_set_in_replay_buffer_kwargs_are_what_expo_reports(tiny_kwargs):
    """offline_ratio / the reward transform given to the buffer: EXPO reports the value the buffer uses."""
    from sb3_expo.data import RewardTransform

    kwargs = dict(offline_ratio=0.25, reward_transform=RewardTransform(2.0, -1.0))
    model = EXPO("MlpPolicy", "Pendulum-v1", replay_buffer_kwargs=kwargs, **tiny_kwargs)
    assert model.replay_buffer.offline_ratio == model.offline_ratio == 0.25
    assert (model.reward_scale, model.reward_shift) == (2.0, -1.0)
    with pytest.raises(ValueError, match="offline_ratio"):
        EXPO("MlpPolicy", "Pendulum-v1", replay_buffer_kwargs=kwargs, offline_ratio=0.75, **tiny_kwargs)
