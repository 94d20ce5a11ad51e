"""Offline/online symmetric sampling buffers: row pattern, both parts' contents, pickling, EXPO integration."""

import pickle

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl

from sb3_expo import EXPO
from sb3_expo.buffers import DictOfflineReplayBuffer, OfflineReplayBuffer, offline_row_mask
from sb3_expo.data import OfflineTransitions, RewardTransform

# Offline observations carry their row id + OFFLINE_ID; online ones carry -(step + 1) (negative).
OFFLINE_ID = 1000.0
OBS_SPACE = spaces.Box(-np.inf, np.inf, (3,), np.float32)
PENDULUM_ACTIONS = spaces.Box(-2.0, 2.0, (1,), np.float32)
DICT_SPACE = spaces.Dict({"pos": OBS_SPACE, "goal": spaces.Box(-1.0, 1.0, (2,), np.float32)})


def offline_data(n: int, action_space: spaces.Box = PENDULUM_ACTIONS, dict_obs: bool = False) -> OfflineTransitions:
    """``n`` offline rows: observation ``OFFLINE_ID + i``, reward ``i``, every third row terminal, actions at the low bound."""
    ids = OFFLINE_ID + np.arange(n, dtype=np.float32)
    obs = np.repeat(ids[:, None], 3, axis=1)
    next_obs = obs + 0.5
    if dict_obs:
        goal = np.zeros((n, 2), np.float32)
        obs, next_obs = {"pos": obs, "goal": goal}, {"pos": next_obs, "goal": goal}
    return OfflineTransitions(
        observations=obs,
        actions=np.tile(action_space.low, (n, 1)),
        rewards=np.arange(n, dtype=np.float32),
        next_observations=next_obs,
        terminals=(np.arange(n) % 3 == 0).astype(np.float32),
    )


def fill_online(buffer, n_steps: int, dict_obs: bool = False, timeout: bool = False) -> None:
    """``n_steps`` online steps per env: observation ``-(step + 1)``, reward 0.5, action 0.25, every step done."""
    for step in range(n_steps):
        obs = np.full((buffer.n_envs, 3), -(step + 1.0), np.float32)
        goal = np.zeros((buffer.n_envs, 2), np.float32)
        obs_in = {"pos": obs, "goal": goal} if dict_obs else obs
        next_in = {"pos": obs - 0.5, "goal": goal} if dict_obs else obs - 0.5
        infos = [{"TimeLimit.truncated": timeout}] * buffer.n_envs
        action = np.full((buffer.n_envs, 1), 0.25, np.float32)
        buffer.add(obs_in, next_in, action, np.full(buffer.n_envs, 0.5), np.ones(buffer.n_envs), infos)


def is_offline(samples) -> np.ndarray:
    obs = samples.observations["pos"] if isinstance(samples.observations, dict) else samples.observations
    return obs[:, 0].cpu().numpy() >= OFFLINE_ID


def make_buffer(offline_rows: int = 50, online_steps: int = 20, n_envs: int = 1, **kwargs) -> OfflineReplayBuffer:
    buffer = OfflineReplayBuffer(100, OBS_SPACE, PENDULUM_ACTIONS, device="cpu", n_envs=n_envs, **kwargs)
    fill_online(buffer, online_steps)
    if offline_rows:
        buffer.attach_offline(offline_data(offline_rows))
    return buffer


# ------------------------------------------------------------------------------------------- mixing ratio


@pytest.mark.parametrize("ratio", [0.5, 0.25, 0.0])
@pytest.mark.parametrize("n_slices, slice_size", [(1, 4), (3, 8), (4, 16), (5, 12), (20, 256)])
def test_every_aligned_slice_has_exact_ratio(ratio, n_slices, slice_size):
    mask = offline_row_mask(n_slices * slice_size, ratio)
    assert (mask.reshape(n_slices, slice_size).sum(axis=1) == slice_size * ratio).all()

    samples = make_buffer(offline_ratio=ratio).sample(n_slices * slice_size)
    offline = is_offline(samples).reshape(n_slices, slice_size)
    assert (offline.sum(axis=1) == slice_size * ratio).all()
    np.testing.assert_array_equal(offline.ravel(), mask)


def test_ratio_is_exact_for_decimal_fractions():
    # 0.3 * 10 is 3.0000000000000004 in floating point; the pattern still has exactly 3 per 10.
    assert (offline_row_mask(1000, 0.3).reshape(100, 10).sum(axis=1) == 3).all()
    assert offline_row_mask(7, 1.0).all()


def test_all_offline_while_online_is_empty():
    buffer = make_buffer(online_steps=0)
    assert buffer.size() == 0
    assert is_offline(buffer.sample(64)).all()


@pytest.mark.parametrize("ratio, offline_rows", [(0.5, 0), (0.0, 50)])
def test_all_online_without_offline_data_or_ratio(ratio, offline_rows):
    assert not is_offline(make_buffer(offline_rows=offline_rows, offline_ratio=ratio).sample(64)).any()


def test_both_parts_sampled_uniformly_with_replacement():
    np.random.seed(0)
    samples = make_buffer(offline_rows=5, online_steps=5).sample(400)
    obs = samples.observations[:, 0].numpy()
    assert set(obs[is_offline(samples)]) == set(OFFLINE_ID + np.arange(5))
    assert set(obs[~is_offline(samples)]) == set(-1.0 - np.arange(5))


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan")])
def test_offline_ratio_out_of_range(ratio):
    with pytest.raises(ValueError, match="offline_ratio"):
        OfflineReplayBuffer(10, OBS_SPACE, PENDULUM_ACTIONS, offline_ratio=ratio)


# --------------------------------------------------------------------------------------------- contents


def test_offline_actions_scaled_to_unit_bounds():
    action_space = spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    buffer = OfflineReplayBuffer(10, OBS_SPACE, action_space, device="cpu")
    data = offline_data(4, action_space)
    data.actions[:] = [[-2.0, 1.0], [0.0, 0.5], [1.0, 0.0], [2.0, 0.25]]
    buffer.attach_offline(data)
    samples = buffer.sample(200)
    rows = (samples.observations[:, 0] - OFFLINE_ID).long()
    expected = th.tensor([[-1.0, 1.0], [0.0, 0.0], [0.5, -1.0], [1.0, -0.5]])
    th.testing.assert_close(samples.actions, expected[rows])


def test_online_rows_are_sb3s():
    samples = make_buffer().sample(64)
    online = ~is_offline(samples)
    assert (samples.actions[online] == 0.25).all()
    th.testing.assert_close(samples.next_observations[online], samples.observations[online] - 0.5)
    assert samples.discounts is None


def test_reward_transform_applied_to_both_parts():
    samples = make_buffer(reward_transform=RewardTransform(scale=2.0, shift=-1.0)).sample(64)
    offline, rewards, obs = is_offline(samples), samples.rewards.flatten(), samples.observations[:, 0]
    th.testing.assert_close(rewards[offline], 2.0 * (obs[offline] - OFFLINE_ID) - 1.0)
    assert (rewards[~offline] == 0.0).all()  # 0.5 * 2 - 1


def test_offline_terminals_and_online_timeouts():
    offline_rows = 30
    samples = make_buffer(offline_rows).sample(128)
    offline, dones = is_offline(samples), samples.dones.flatten()
    row = (samples.observations[offline, 0] - OFFLINE_ID).long()
    th.testing.assert_close(dones[offline], (row % 3 == 0).float())
    assert (dones[~offline] == 1.0).all()  # online steps are all done, none timed out

    truncated = OfflineReplayBuffer(100, OBS_SPACE, PENDULUM_ACTIONS, device="cpu")
    fill_online(truncated, 10, timeout=True)
    truncated.attach_offline(offline_data(offline_rows))
    samples = truncated.sample(128)
    assert (samples.dones.flatten()[~is_offline(samples)] == 0.0).all()  # a time limit is not a terminal


class ShiftNormalize:
    """Stands in for VecNormalize: shifts observations by 10000 and halves rewards."""

    def normalize_obs(self, obs):
        if isinstance(obs, dict):
            return {key: value + 10000.0 for key, value in obs.items()}
        return obs + 10000.0

    def normalize_reward(self, reward):
        return reward / 2.0


def test_env_normalisation_applied_to_both_parts():
    buffer = make_buffer()
    np.random.seed(1)
    plain = buffer.sample(64)
    np.random.seed(1)
    normalised = buffer.sample(64, env=ShiftNormalize())
    th.testing.assert_close(normalised.observations, plain.observations + 10000.0)
    th.testing.assert_close(normalised.next_observations, plain.next_observations + 10000.0)
    th.testing.assert_close(normalised.rewards, plain.rewards / 2.0)


# ----------------------------------------------------------------------------------------- Dict, n_envs


def test_dict_observations():
    buffer = DictOfflineReplayBuffer(100, DICT_SPACE, PENDULUM_ACTIONS, device="cpu")
    fill_online(buffer, 20, dict_obs=True)
    buffer.attach_offline(offline_data(50, dict_obs=True))
    samples = buffer.sample(4 * 16)
    assert set(samples.observations) == {"pos", "goal"}
    assert samples.observations["goal"].shape == (64, 2)
    assert (is_offline(samples).reshape(4, 16).sum(axis=1) == 8).all()
    th.testing.assert_close(
        samples.next_observations["pos"][~is_offline(samples)], samples.observations["pos"][~is_offline(samples)] - 0.5
    )
    th.testing.assert_close(
        samples.next_observations["pos"][is_offline(samples)], samples.observations["pos"][is_offline(samples)] + 0.5
    )


def test_dict_data_into_box_buffer_is_refused():
    buffer = OfflineReplayBuffer(10, OBS_SPACE, PENDULUM_ACTIONS, device="cpu")
    with pytest.raises(ValueError, match="observations"):
        buffer.attach_offline(offline_data(5, dict_obs=True))


def test_space_mismatch():
    buffer = OfflineReplayBuffer(10, spaces.Box(-1, 1, (4,), np.float32), PENDULUM_ACTIONS, device="cpu")
    with pytest.raises(ValueError, match="shape"):
        buffer.attach_offline(offline_data(5))
    wide = spaces.Box(-5.0, 5.0, (1,), np.float32)
    out_of_bounds = OfflineReplayBuffer(10, OBS_SPACE, PENDULUM_ACTIONS, device="cpu")
    with pytest.raises(ValueError, match="outside the action space"):
        out_of_bounds.attach_offline(offline_data(5, wide))


def test_two_envs():
    buffer = make_buffer(online_steps=10, n_envs=2)
    assert buffer.size() == 10
    samples = buffer.sample(3 * 32)
    assert (is_offline(samples).reshape(3, 32).sum(axis=1) == 16).all()


def test_memory_efficient_variant():
    buffer = make_buffer(optimize_memory_usage=True, handle_timeout_termination=False)
    samples = buffer.sample(64)
    online = ~is_offline(samples)
    assert (is_offline(samples).reshape(4, 16).sum(axis=1) == 8).all()
    assert (samples.observations[online, 0] < 0).all()


# ------------------------------------------------------------------------------------------------ pickle


def test_pickle_drops_offline_data():
    sizes = [len(pickle.dumps(make_buffer(offline_rows=n))) for n in (0, 10, 20_000)]
    assert sizes[0] == sizes[1] == sizes[2]

    restored = pickle.loads(pickle.dumps(make_buffer(offline_rows=50)))
    assert restored.offline_size == 0
    assert restored.size() == 20
    assert not is_offline(restored.sample(32)).any()
    restored.attach_offline(offline_data(50))
    assert restored.offline_size == 50
    assert is_offline(restored.sample(32)).sum() == 16


def test_sb3_save_and_load_pkl(tmp_path):
    buffer = make_buffer(offline_rows=5000, reward_transform=RewardTransform(shift=-1.0), offline_ratio=0.25)
    save_to_pkl(tmp_path / "buffer", buffer)
    restored = load_from_pkl(tmp_path / "buffer")
    assert isinstance(restored, OfflineReplayBuffer)
    assert restored.offline_size == 0 and restored.offline_ratio == 0.25
    assert restored.reward_transform == RewardTransform(shift=-1.0)
    restored.attach_offline(offline_data(8))
    assert is_offline(restored.sample(16)).sum() == 4


# ------------------------------------------------------------------------------------------- integration


def test_expo_learns_with_offline_buffer(tiny_kwargs, tmp_path):
    model = EXPO(
        "MlpPolicy",
        "Pendulum-v1",
        replay_buffer_class=OfflineReplayBuffer,
        replay_buffer_kwargs=dict(offline_ratio=0.5),
        buffer_size=1000,
        seed=0,
        **tiny_kwargs,
    )
    model.replay_buffer.attach_offline(offline_data(200))
    model.learn(100)
    assert model.replay_buffer.offline_size == 200
    assert model._n_updates > 0

    # The saved replay buffer holds the online data only; after loading it, attach the dataset again.
    model.save_replay_buffer(tmp_path / "small")
    model.replay_buffer.attach_offline(offline_data(20_000))
    model.save_replay_buffer(tmp_path / "large")
    assert (tmp_path / "small.pkl").stat().st_size == (tmp_path / "large.pkl").stat().st_size
    model.load_replay_buffer(tmp_path / "small")
    assert model.replay_buffer.offline_size == 0
    model.replay_buffer.attach_offline(offline_data(200))
    n_updates = model._n_updates
    model.learn(10, reset_num_timesteps=False)
    assert model._n_updates > n_updates


def test_offline_actions_at_the_bounds_are_clipped_inside_them():
    """As the reference's loaders (clip_to_eps): dataset actions stay inside the open interval of the edit's tanh."""
    action_space = spaces.Box(-2.0, 2.0, (2,), np.float32)
    buffer = OfflineReplayBuffer(10, OBS_SPACE, action_space, device="cpu")
    data = offline_data(2, action_space)
    data.actions[:] = [[-2.0, 2.0], [0.0, 1.0]]
    buffer.attach_offline(data)
    actions = buffer.sample_offline(100).actions
    assert actions.abs().max().item() == pytest.approx(1 - 1e-5)
    assert {round(value, 6) for value in actions[:, 1].tolist()} == {round(1 - 1e-5, 6), 0.5}
