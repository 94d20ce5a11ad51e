"""
Action chunks against a brute-force reference: random episodes (shorter than the chunk too, terminated or
truncated) chunked offline (chunk_offline, and the Minari / D4RL / robomimic loaders' episode ends) and online
(through the chunk replay buffers with one and two envs, before and after the buffer wraps), and both mixed in
one batch by the offline replay buffer.

The reference walks each episode step by step in plain Python: a chunk sums ``gamma^i r`` until ``h`` steps or the
episode's last step, whichever comes first, repeats the last real action, and bootstraps from that step's next
observation unless it terminated.
"""

import warnings
from typing import NamedTuple

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer

from sb3_expo.buffers import OFFLINE_ACTION_LIMIT, DictOfflineReplayBuffer, OfflineReplayBuffer, offline_row_mask
from sb3_expo.chunks import ChunkReplayBuffer, DictChunkReplayBuffer, chunk_offline
from sb3_expo.data import (
    OfflineTransitions,
    RewardTransform,
    load_d4rl_hdf5,
    load_minari,
    load_robomimic_hdf5,
    scale_actions,
)

OBS_DIM, ACTION_DIM = 3, 2
OBS_SPACE = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
DICT_SPACE = spaces.Dict({"a": spaces.Box(-np.inf, np.inf, (2,), np.float32), "b": spaces.Box(-np.inf, np.inf, (1,))})
ACTION_SPACE = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
GAMMA = 0.9


class Step(NamedTuple):
    obs: np.ndarray
    action: np.ndarray
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool


def random_episodes(rng: np.random.Generator, n_episodes: int, max_length: int, action_scale: float = 1.0) -> list:
    """Episodes of 1..max_length steps, each terminated or truncated at random; every observation unique."""
    episodes = []
    for _ in range(n_episodes):
        length = int(rng.integers(1, max_length + 1))
        obs = rng.normal(size=(length + 1, OBS_DIM)).astype(np.float32)
        terminated = bool(rng.random() < 0.5)
        end = np.arange(length) == length - 1
        episodes.append([
            Step(obs[i], rng.uniform(-action_scale, action_scale, ACTION_DIM).astype(np.float32),
                 float(np.float32(rng.normal())), obs[i + 1], terminated and end[i], not terminated and end[i])
            for i in range(length)
        ])  # fmt: skip
    return episodes


def reference_chunk(steps: list, horizon: int, gamma: float, reward=lambda r: r) -> dict:
    """The chunk starting at ``steps[0]``; ``steps`` runs to where the data says the episode (or what is known) ends."""
    ret, actions = 0.0, []
    for i in range(horizon):
        step = steps[i]
        ret += gamma**i * reward(step.reward)
        actions.append(step.action)
        if i == len(steps) - 1:
            break
    length = len(actions)
    actions += [actions[-1]] * (horizon - length)
    return {
        "observations": steps[0].obs,
        "actions": np.concatenate(actions),
        "rewards": ret,
        "discounts": gamma**length,
        "dones": float(step.terminated),
        "next_observations": step.next_obs,
    }


def reference_offline(episodes: list, horizon: int, gamma: float) -> list:
    return [reference_chunk(episode[k:], horizon, gamma) for episode in episodes for k in range(len(episode))]


def stack(chunks: list) -> dict:
    return {field: np.stack([np.asarray(chunk[field], dtype=np.float64) for chunk in chunks]) for field in chunks[0]}


def as_dict(obs: np.ndarray) -> dict:
    return {"a": obs[..., :2], "b": obs[..., 2:]}


def flat(obs) -> np.ndarray:
    """Box observations as they are, Dict ones ("a", "b") concatenated back; numpy from tensors too."""
    numpy = lambda array: array.cpu().numpy() if isinstance(array, th.Tensor) else np.asarray(array)  # noqa: E731
    return np.concatenate([numpy(obs["a"]), numpy(obs["b"])], axis=-1) if isinstance(obs, dict) else numpy(obs)


def assert_chunks(got: dict, expected: dict) -> None:
    """Field by field: observations and actions exactly, returns and discounts to float32 round-off."""
    for field in ("observations", "next_observations", "actions"):
        np.testing.assert_array_equal(flat(got[field]), expected[field], err_msg=field)
    for field in ("rewards", "discounts", "dones"):
        value = got[field].cpu().numpy() if isinstance(got[field], th.Tensor) else got[field]
        np.testing.assert_allclose(np.reshape(value, -1), expected[field], rtol=1e-5, atol=1e-5, err_msg=field)


def transitions_of(episodes: list, dict_obs: bool = False, ends: bool = True) -> OfflineTransitions:
    steps = [step for episode in episodes for step in episode]
    obs, next_obs = np.stack([s.obs for s in steps]), np.stack([s.next_obs for s in steps])
    episode_ends = np.concatenate([np.arange(len(episode)) == len(episode) - 1 for episode in episodes])
    return OfflineTransitions(
        as_dict(obs) if dict_obs else obs,
        np.stack([s.action for s in steps]),
        np.array([s.reward for s in steps]),
        as_dict(next_obs) if dict_obs else next_obs,
        np.array([s.terminated for s in steps]),
        episode_ends=episode_ends if ends else None,
    )


def offline_fields(chunked) -> dict:
    return {
        "observations": chunked.observations,
        "next_observations": chunked.next_observations,
        "actions": chunked.actions,
        "rewards": chunked.rewards,
        "discounts": chunked.discounts,
        "dones": chunked.terminals,
    }


# ------------------------------------------------------------------------------------------------------ offline


@pytest.mark.parametrize("horizon", [1, 2, 4])
@pytest.mark.parametrize("dict_obs", [False, True])
@pytest.mark.parametrize("given_ends", [True, False])
def test_chunk_offline_matches_the_reference(horizon, dict_obs, given_ends):
    episodes = random_episodes(np.random.default_rng(horizon), n_episodes=15, max_length=7)
    data = transitions_of(episodes, dict_obs, ends=given_ends)
    chunked = chunk_offline(data, horizon, GAMMA)
    assert chunked.actions.shape == (len(data), horizon * ACTION_DIM) and len(chunked) == len(data)
    assert_chunks(offline_fields(chunked), stack(reference_offline(episodes, horizon, GAMMA)))


def test_horizon_one_is_the_data_itself():
    data = transitions_of(random_episodes(np.random.default_rng(0), n_episodes=5, max_length=4))
    chunked = chunk_offline(data, 1, GAMMA)
    for field in ("actions", "rewards", "terminals", "next_observations"):
        np.testing.assert_array_equal(getattr(chunked, field), getattr(data, field))
    np.testing.assert_allclose(chunked.discounts, GAMMA)


def test_inferred_episode_ends_and_terminals():
    obs = np.arange(6, dtype=np.float32)[:, None]
    next_obs = obs + 1
    next_obs[2] = 99  # a boundary after row 2
    data = OfflineTransitions(obs, np.zeros((6, 1)), np.zeros(6), next_obs, np.eye(6)[4])  # row 4 terminal, continued
    assert data.episode_ends.tolist() == [False, False, True, False, True, True]
    given = OfflineTransitions(obs, np.zeros((6, 1)), np.zeros(6), next_obs, np.zeros(6), episode_ends=np.zeros(6))
    assert given.episode_ends.tolist() == [False] * 5 + [True]  # the last row always ends an episode
    assert chunk_offline(data, 3, 0.5).lengths.tolist() == [3, 2, 1, 2, 1, 1]
    with pytest.raises(ValueError, match="episode_ends"):
        OfflineTransitions(obs, np.zeros((6, 1)), np.zeros(6), next_obs, np.zeros(6), episode_ends=np.zeros(5))


def test_chunk_settings_are_checked():
    data = transitions_of(random_episodes(np.random.default_rng(0), n_episodes=2, max_length=3))
    for horizon, gamma in [(0, 0.9), (2.0, 0.9), (2, 0.0), (2, 1.5)]:
        with pytest.raises(ValueError):
            chunk_offline(data, horizon, gamma)


# -------------------------------------------------------------------------------------------------- loaders

h5py = pytest.importorskip("h5py")


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_minari_episode_ends_give_the_reference_chunks(minari_root):
    minari = pytest.importorskip("minari")
    from minari.data_collector import EpisodeBuffer

    episodes = random_episodes(np.random.default_rng(1), n_episodes=8, max_length=6)
    buffers = [
        EpisodeBuffer(
            id=index,
            observations=np.stack([step.obs for step in episode] + [episode[-1].next_obs]),
            actions=np.stack([step.action for step in episode]),
            rewards=[step.reward for step in episode],
            terminations=[step.terminated for step in episode],
            truncations=[step.truncated for step in episode],
        )
        for index, episode in enumerate(episodes)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari warns about missing metadata
        minari.create_dataset_from_buffers(
            "test/chunks-v0", buffers, observation_space=OBS_SPACE, action_space=ACTION_SPACE, algorithm_name="random"
        )
    data = load_minari("test/chunks-v0")
    ends = np.concatenate([np.arange(len(episode)) == len(episode) - 1 for episode in episodes])
    np.testing.assert_array_equal(data.episode_ends, ends)
    assert_chunks(offline_fields(chunk_offline(data, 3, GAMMA)), stack(reference_offline(episodes, 3, GAMMA)))


def d4rl_visible_episodes(episodes: list) -> list:
    """
    The steps a D4RL file without next_observations keeps (the rule of load_d4rl_hdf5): a truncated episode loses
    its last step (its next observation is not stored), a terminal step's next observation is the following row's,
    and the file's last row is dropped.
    """
    visible = []
    for index, episode in enumerate(episodes):
        following = episodes[index + 1][0].obs if index + 1 < len(episodes) else None
        steps = list(episode[:-1])
        if episode[-1].terminated and following is not None:
            steps.append(episode[-1]._replace(next_obs=following))
        visible.append(steps)
    return [steps for steps in visible if steps]


@pytest.mark.parametrize("next_observations", [False, True])
def test_d4rl_episode_ends_give_the_reference_chunks(tmp_path, next_observations):
    episodes = random_episodes(np.random.default_rng(2), n_episodes=10, max_length=6)
    steps = [step for episode in episodes for step in episode]
    with h5py.File(tmp_path / "d.hdf5", "w") as file:
        file["observations"] = np.stack([step.obs for step in steps])
        file["actions"] = np.stack([step.action for step in steps])
        file["rewards"] = np.array([step.reward for step in steps], dtype=np.float32)
        file["terminals"] = np.array([step.terminated for step in steps])
        file["timeouts"] = np.array([step.truncated for step in steps])
        if next_observations:
            file["next_observations"] = np.stack([step.next_obs for step in steps])
    data = load_d4rl_hdf5(tmp_path / "d.hdf5")
    visible = episodes if next_observations else d4rl_visible_episodes(episodes)
    ends = np.concatenate([np.arange(len(episode)) == len(episode) - 1 for episode in visible])
    np.testing.assert_array_equal(data.episode_ends, ends)
    for horizon in (1, 4):
        assert_chunks(offline_fields(chunk_offline(data, horizon, GAMMA)), stack(reference_offline(visible, horizon, GAMMA)))


def test_robomimic_demos_end_episodes(tmp_path):
    lengths = {"demo_0": 3, "demo_1": 1, "demo_2": 4}
    with h5py.File(tmp_path / "r.hdf5", "w") as file:
        for demo, (name, length) in enumerate(lengths.items()):
            obs = np.stack([np.full(length + 1, demo), np.arange(length + 1)], axis=1).astype(np.float32)
            file[f"data/{name}/obs/object"], file[f"data/{name}/next_obs/object"] = obs[:-1], obs[1:]
            file[f"data/{name}/actions"] = np.arange(length * 2, dtype=np.float32).reshape(length, 2)
            file[f"data/{name}/rewards"] = np.ones(length)
            file[f"data/{name}/dones"] = np.eye(length)[-1]
    data = load_robomimic_hdf5(tmp_path / "r.hdf5")
    assert data.episode_ends.tolist() == [False, False, True, True, False, False, False, True]
    chunked = chunk_offline(data, 2, 0.5)
    assert chunked.lengths.tolist() == [2, 2, 1, 1, 2, 2, 2, 1]
    np.testing.assert_allclose(chunked.rewards, [1.5, 1.5, 1, 1, 1.5, 1.5, 1.5, 1])
    assert chunked.terminals.tolist() == [0, 1, 1, 1, 0, 0, 1, 1]


# --------------------------------------------------------------------------------------------------- online


def fill(buffer, n_steps: int, rng: np.random.Generator, max_length: int = 6, dict_obs: bool = False) -> list:
    """
    ``n_steps`` steps of every env into ``buffer``, episodes of 1..max_length steps ending by termination or
    truncation (``TimeLimit.truncated``, as SB3's VecEnv reports it) at random; every observation unique.

    :return: each env's steps in the order they were written (its timeline)
    """
    n_envs = buffer.n_envs
    timelines: list = [[] for _ in range(n_envs)]
    left = rng.integers(1, max_length + 1, size=n_envs)
    obs = rng.normal(size=(n_envs, OBS_DIM)).astype(np.float32)
    for _ in range(n_steps):
        action = rng.uniform(-1, 1, (n_envs, ACTION_DIM)).astype(np.float32)
        reward = rng.normal(size=n_envs).astype(np.float32)
        next_obs = rng.normal(size=(n_envs, OBS_DIM)).astype(np.float32)
        left -= 1
        ends = left == 0
        terminated = ends & (rng.random(n_envs) < 0.5)
        truncated = ends & ~terminated
        infos = [{"TimeLimit.truncated": bool(truncated[env])} for env in range(n_envs)]
        convert = as_dict if dict_obs else (lambda array: array)
        buffer.add(convert(obs), convert(next_obs), action, reward, ends.astype(np.float32), infos)
        for env in range(n_envs):
            timelines[env].append(
                Step(obs[env], action[env], float(reward[env]), next_obs[env], terminated[env], truncated[env])
            )
        left = np.where(ends, rng.integers(1, max_length + 1, size=n_envs), left)
        obs = np.where(ends[:, None], rng.normal(size=(n_envs, OBS_DIM)).astype(np.float32), next_obs)
    return timelines


def reference_online(timeline: list, slot: int, buffer_size: int, horizon: int, gamma: float, reward=lambda r: r) -> dict:
    """
    The chunk starting at buffer row ``slot``, from the env's timeline: the step written last at that row, then
    the steps after it up to its episode's end or the newest step written.
    """
    written = len(timeline)
    step = slot if written <= buffer_size else written - buffer_size + (slot - written) % buffer_size
    last = step
    while not (timeline[last].terminated or timeline[last].truncated) and last < written - 1:
        last += 1
    return reference_chunk(timeline[step : last + 1], horizon, gamma, reward)


def every_start(buffer) -> tuple[np.ndarray, np.ndarray]:
    """Every written (row, env) pair."""
    rows = np.arange(buffer.buffer_size if buffer.full else buffer.pos)
    return np.repeat(rows, buffer.n_envs), np.tile(np.arange(buffer.n_envs), len(rows))


def sample_fields(samples) -> dict:
    return {
        field: getattr(samples, field)
        for field in ("observations", "next_observations", "actions", "rewards", "discounts", "dones")
    }


@pytest.mark.parametrize("n_envs", [1, 2])
@pytest.mark.parametrize("n_steps", [5, 40])  # before and after the buffer wraps (13 rows, 6 per env with 2 envs)
@pytest.mark.parametrize("horizon", [1, 3])
@pytest.mark.parametrize("dict_obs", [False, True])
def test_online_chunks_match_the_reference(n_envs, n_steps, horizon, dict_obs):
    buffer_class = DictChunkReplayBuffer if dict_obs else ChunkReplayBuffer
    space = DICT_SPACE if dict_obs else OBS_SPACE
    buffer = buffer_class(13, space, ACTION_SPACE, device="cpu", n_envs=n_envs, action_chunk=horizon, gamma=GAMMA)
    timelines = fill(buffer, n_steps, np.random.default_rng(n_steps + n_envs), dict_obs=dict_obs)
    starts, envs = every_start(buffer)
    expected = [reference_online(timelines[env], row, buffer.buffer_size, horizon, GAMMA) for row, env in zip(starts, envs)]
    assert_chunks(sample_fields(buffer.chunk_samples(starts, envs)), stack(expected))


@pytest.mark.parametrize("dict_obs", [False, True])
def test_sampled_chunks_are_the_reference_chunks_of_their_rows(dict_obs):
    buffer_class = DictChunkReplayBuffer if dict_obs else ChunkReplayBuffer
    buffer = buffer_class(
        13, DICT_SPACE if dict_obs else OBS_SPACE, ACTION_SPACE, device="cpu", n_envs=2, action_chunk=4, gamma=GAMMA
    )
    timelines = fill(buffer, 30, np.random.default_rng(3), dict_obs=dict_obs)
    where = {flat(buffer.observations)[row, env].tobytes(): (row, env) for row, env in zip(*every_start(buffer))}
    samples = buffer.sample(64)
    assert samples.actions.shape == (64, 4 * ACTION_DIM) and samples.discounts.shape == samples.rewards.shape == (64, 1)
    rows = [where[obs.tobytes()] for obs in flat(samples.observations)]
    expected = [reference_online(timelines[env], row, buffer.buffer_size, 4, GAMMA) for row, env in rows]
    assert_chunks(sample_fields(samples), stack(expected))


@pytest.mark.parametrize("dict_obs", [False, True])
def test_horizon_one_samples_are_sb3s(dict_obs):
    space = DICT_SPACE if dict_obs else OBS_SPACE
    chunked = (DictChunkReplayBuffer if dict_obs else ChunkReplayBuffer)(13, space, ACTION_SPACE, device="cpu", n_envs=2)
    plain = (DictReplayBuffer if dict_obs else ReplayBuffer)(13, space, ACTION_SPACE, device="cpu", n_envs=2)
    for buffer in (chunked, plain):
        fill(buffer, 20, np.random.default_rng(4), dict_obs=dict_obs)
    np.random.seed(5)
    ours = chunked.sample(32)
    np.random.seed(5)
    theirs = plain.sample(32)
    assert ours.discounts is None and theirs.discounts is None
    for field in ("observations", "next_observations", "actions", "rewards", "dones"):
        mine, sb3 = getattr(ours, field), getattr(theirs, field)
        pairs = [(mine[key], sb3[key]) for key in mine] if isinstance(mine, dict) else [(mine, sb3)]
        assert all(th.equal(first, second) for first, second in pairs), field

    # The chunk path with h = 1 gives SB3's rows too, with discount gamma.
    starts = np.random.randint(0, chunked.buffer_size, size=16)
    np.random.seed(6)
    envs = np.random.randint(0, 2, size=(16,))
    np.random.seed(6)
    theirs = plain._get_samples(starts)
    ours = chunked.chunk_samples(starts, envs)
    assert th.allclose(ours.discounts, th.full((16, 1), chunked.gamma))
    for field in ("observations", "next_observations", "actions", "rewards", "dones"):
        np.testing.assert_array_equal(flat(getattr(ours, field)), flat(getattr(theirs, field)))


def test_memory_efficient_variant_needs_horizon_one():
    memory_efficient = dict(device="cpu", optimize_memory_usage=True, handle_timeout_termination=False)
    with pytest.raises(ValueError, match="optimize_memory_usage=True needs action_chunk=1"):
        ChunkReplayBuffer(13, OBS_SPACE, ACTION_SPACE, action_chunk=2, **memory_efficient)
    ChunkReplayBuffer(13, OBS_SPACE, ACTION_SPACE, **memory_efficient)


# ----------------------------------------------------------------------------------------- offline mixing

TRANSFORM = RewardTransform(scale=2.0, shift=-1.0)
WIDE_ACTIONS = spaces.Box(-2.0, 2.0, (ACTION_DIM,), np.float32)  # offline actions are scaled to [-1, 1] by half


def mixing_buffer(dict_obs: bool, horizon: int):
    buffer_class = DictOfflineReplayBuffer if dict_obs else OfflineReplayBuffer
    space = DICT_SPACE if dict_obs else OBS_SPACE
    buffer = buffer_class(13, space, WIDE_ACTIONS, device="cpu", n_envs=2, reward_transform=TRANSFORM,
                          action_chunk=horizon, gamma=GAMMA)  # fmt: skip
    timelines = fill(buffer, 30, np.random.default_rng(7), dict_obs=dict_obs)
    episodes = random_episodes(np.random.default_rng(8), n_episodes=12, max_length=6, action_scale=2.0)
    buffer.attach_offline(transitions_of(episodes, dict_obs))
    return buffer, timelines, episodes


def reference_mixed(buffer, timelines: list, episodes: list, observations: np.ndarray) -> dict:
    """The reference chunk of each sampled row, found by its (unique) observation, offline or online."""
    horizon = buffer.action_chunk
    online = {flat(buffer.observations)[row, env].tobytes(): (row, env) for row, env in zip(*every_start(buffer))}
    offline_chunks = [
        reference_chunk(episode[k:], horizon, GAMMA, TRANSFORM) for episode in episodes for k in range(len(episode))
    ]
    for chunk in offline_chunks:
        scaled = scale_actions(chunk["actions"].reshape(horizon, ACTION_DIM), WIDE_ACTIONS).reshape(-1)
        chunk["actions"] = np.clip(scaled, -OFFLINE_ACTION_LIMIT, OFFLINE_ACTION_LIMIT).astype(np.float32)
    offline = {chunk["observations"].tobytes(): chunk for chunk in offline_chunks}
    expected = []
    for obs in observations:
        if obs.tobytes() in offline:
            expected.append(offline[obs.tobytes()])
        else:
            row, env = online[obs.tobytes()]
            expected.append(reference_online(timelines[env], row, buffer.buffer_size, horizon, GAMMA, TRANSFORM))
    return stack(expected)


@pytest.mark.parametrize("dict_obs", [False, True])
def test_mixed_batches_of_chunks(dict_obs):
    buffer, timelines, episodes = mixing_buffer(dict_obs, horizon=3)
    samples = buffer.sample(40)
    observations = flat(samples.observations)
    offline_obs = {obs.tobytes() for episode in episodes for obs in (step.obs for step in episode)}
    is_offline = np.array([obs.tobytes() in offline_obs for obs in observations])
    np.testing.assert_array_equal(is_offline, offline_row_mask(40, 0.5))
    assert_chunks(sample_fields(samples), reference_mixed(buffer, timelines, episodes, observations))

    offline = buffer.sample_offline(16)  # pretraining's rows: chunks too
    assert_chunks(sample_fields(offline), reference_mixed(buffer, timelines, episodes, flat(offline.observations)))
    obs, actions, online_share = buffer.sample_imitation(16)
    assert online_share == 0.0  # no successful episode online
    expected = reference_mixed(buffer, timelines, episodes, flat(obs))
    np.testing.assert_array_equal(actions.numpy(), expected["actions"])


def test_mixing_with_horizon_one_is_unchanged():
    """With h = 1 the chunk-aware buffer samples the rows, rewards and random draws of the one-step buffer."""
    buffer, timelines, episodes = mixing_buffer(dict_obs=False, horizon=1)
    np.random.seed(9)
    samples = buffer.sample(40)
    assert samples.discounts is None and samples.actions.shape == (40, ACTION_DIM)
    expected = reference_mixed(buffer, timelines, episodes, flat(samples.observations))
    np.testing.assert_array_equal(samples.actions.numpy(), expected["actions"])
    np.testing.assert_allclose(samples.rewards.numpy().ravel(), expected["rewards"], rtol=1e-6)
    # the same draws as SB3's ReplayBuffer for the online rows
    online = ~offline_row_mask(40, 0.5)
    plain = ReplayBuffer(13, OBS_SPACE, WIDE_ACTIONS, device="cpu", n_envs=2)
    fill(plain, 30, np.random.default_rng(7))
    np.random.seed(9)
    np.random.randint(0, buffer.offline_size, size=20)  # the offline rows are drawn first
    theirs = plain.sample(20)
    assert th.equal(samples.observations[online], theirs.observations)
    assert th.equal(samples.rewards[online], TRANSFORM(theirs.rewards))


def test_checkpointed_chunk_buffer_samples_the_same_chunks(tmp_path):
    """A checkpoint's buffer (data, not a pickle) keeps the chunk settings; another chunk length is refused."""
    from sb3_expo.checkpoint_data import BUFFER_FILES, buffer_data, restore_buffer
    from sb3_expo.safe_state import read_data, write_data

    buffer, _, _ = mixing_buffer(dict_obs=False, horizon=3)
    write_data(tmp_path, BUFFER_FILES, buffer_data(buffer))
    fresh = OfflineReplayBuffer(13, OBS_SPACE, WIDE_ACTIONS, device="cpu", n_envs=2, reward_transform=TRANSFORM,
                                action_chunk=3, gamma=GAMMA)  # fmt: skip
    restore_buffer(fresh, read_data(tmp_path, BUFFER_FILES), tmp_path)
    starts, envs = every_start(buffer)
    for field, value in sample_fields(buffer.chunk_samples(starts, envs)).items():
        assert th.equal(value, getattr(fresh.chunk_samples(starts, envs), field)), field
    other = OfflineReplayBuffer(13, OBS_SPACE, WIDE_ACTIONS, device="cpu", n_envs=2, action_chunk=2, gamma=GAMMA)
    with pytest.raises(ValueError, match="action_chunk is 3, this model's is 2"):
        restore_buffer(other, read_data(tmp_path, BUFFER_FILES), tmp_path)


class HalvingNormalizer:
    """Stands in for VecNormalize: doubles observations, halves and clips each reward (clipping is per step)."""

    def normalize_obs(self, obs):
        return {key: value * 2 for key, value in obs.items()} if isinstance(obs, dict) else obs * 2

    def normalize_reward(self, reward):
        return np.clip(np.asarray(reward) / 2, -0.3, 0.3)


def test_chunks_normalise_each_steps_reward_before_the_sum():
    buffer, timelines, episodes = mixing_buffer(dict_obs=False, horizon=3)
    np.random.seed(10)
    samples = buffer.sample(40, env=HalvingNormalizer())
    np.random.seed(10)
    raw = buffer.sample(40)
    np.testing.assert_array_equal(samples.observations.numpy(), raw.observations.numpy() * 2)
    per_step = lambda reward: TRANSFORM(float(np.clip(np.float32(reward) / 2, -0.3, 0.3)))  # noqa: E731
    online = {flat(buffer.observations)[row, env].tobytes(): (row, env) for row, env in zip(*every_start(buffer))}
    offline = {step.obs.tobytes(): episode[k:] for episode in episodes for k, step in enumerate(episode)}
    expected = [
        reference_chunk(offline[key], 3, GAMMA, per_step)
        if key in offline
        else reference_online(timelines[online[key][1]], online[key][0], buffer.buffer_size, 3, GAMMA, per_step)
        for key in (obs.tobytes() for obs in raw.observations.numpy())
    ]
    np.testing.assert_allclose(samples.rewards.numpy().ravel(), stack(expected)["rewards"], rtol=1e-5, atol=1e-6)
