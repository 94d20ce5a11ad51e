"""Offline-data loaders on small real datasets built in tmp_path: Minari, D4RL HDF5 and robomimic HDF5."""

import sys
import types
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy

from sb3_expo.data import (
    DatasetNotFoundError,
    OfflineTransitions,
    RewardTransform,
    load_d4rl_hdf5,
    load_minari,
    load_offline_dataset,
    load_robomimic_hdf5,
    scale_actions,
    validate_against_env,
)

h5py = pytest.importorskip("h5py")
minari = pytest.importorskip("minari")

# Observations encode (episode, step): the next observation of the same episode is one step on.
NEXT_STEP = np.array([0, 1], dtype=np.float32)

# ----------------------------------------------------------------------------------------------- Minari


class CountingEnv(gym.Env):
    """
    Observations encode (episode, step) so every transition can be checked. Odd episodes terminate
    after ``terminate_at`` steps; wrapped in a TimeLimit, even episodes are truncated.
    """

    def __init__(self, dict_obs: bool = False, terminate_at: int = 3):
        pos = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.observation_space = spaces.Dict({"pos": pos, "goal": spaces.Box(-1, 1, (1,), np.float32)}) if dict_obs else pos
        self.action_space = spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.dict_obs, self.terminate_at = dict_obs, terminate_at
        self.episode, self.t = -1, 0

    def _obs(self):
        pos = np.array([self.episode, self.t], dtype=np.float32)
        return {"pos": pos, "goal": np.array([0.5], dtype=np.float32)} if self.dict_obs else pos

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        terminated = self.episode % 2 == 1 and self.t == self.terminate_at
        return self._obs(), float(self.t), terminated, False, {}


def _stack(observations):
    if isinstance(observations[0], dict):
        return {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
    return np.stack(observations)


def collect_episodes(env: gym.Env, n_episodes: int, seed: int = 0) -> list:
    """Random-action episodes as Minari episode buffers (built directly: DataCollector would need jax)."""
    from minari.data_collector import EpisodeBuffer

    env.action_space.seed(seed)
    buffers = []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed + episode)
        observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
        while not (terminations and (terminations[-1] or truncations[-1])):
            action = env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
        buffers.append(
            EpisodeBuffer(
                id=episode,
                observations=_stack(observations),
                actions=np.stack(actions),
                rewards=rewards,
                terminations=terminations,
                truncations=truncations,
            )
        )
    return buffers


def create_minari_dataset(dataset_id: str, env: gym.Env, n_episodes: int, record_env_spec: bool = False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari warns about missing metadata (author, eval env, ...)
        return minari.create_dataset_from_buffers(
            dataset_id,
            collect_episodes(env, n_episodes),
            env=env.spec if record_env_spec else None,
            observation_space=env.observation_space,
            action_space=env.action_space,
            algorithm_name="random",
        )


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "minari"


def _episode_starts(next_obs: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Rows whose observation is not the previous row's next observation (always true at row 0)."""
    return np.concatenate([[True], ~np.all(next_obs[:-1] == obs[1:], axis=1)])


def test_minari_pendulum_box(minari_root):
    env = gym.make("Pendulum-v1", max_episode_steps=7)
    create_minari_dataset("test/pendulum/random-v0", env, n_episodes=3)

    data = load_minari("test/pendulum/random-v0")
    assert len(data) == 21 and data.observations.shape == (21, 3) and data.actions.shape == (21, 1)
    assert data.observations.dtype == np.float32 and data.terminals.dtype == np.float32
    assert not data.terminals.any()  # truncation is not termination
    assert np.flatnonzero(_episode_starts(data.next_observations, data.observations)).tolist() == [0, 7, 14]
    validate_against_env(data, env.observation_space, env.action_space)
    scaled = scale_actions(data.actions, env.action_space)
    assert np.abs(scaled).max() <= 1.0 and np.allclose(scaled, data.actions / 2.0)

    same = load_minari(minari.load_dataset("test/pendulum/random-v0"))
    assert np.array_equal(same.next_observations, data.next_observations)


@pytest.mark.parametrize("dict_obs", [False, True])
def test_minari_episode_boundaries_and_terminals(minari_root, dict_obs):
    env = gym.wrappers.TimeLimit(CountingEnv(dict_obs=dict_obs), max_episode_steps=5)
    create_minari_dataset(f"test/counting-{'dict' if dict_obs else 'box'}-v0", env, n_episodes=4)

    data = load_minari(f"test/counting-{'dict' if dict_obs else 'box'}-v0")
    assert len(data) == 5 + 3 + 5 + 3  # truncated, terminated, truncated, terminated
    if dict_obs:
        assert isinstance(data.observations, dict) and set(data.observations) == {"pos", "goal"}
        assert data.next_observations["goal"].shape == (16, 1)
    pos = data.observations["pos"] if dict_obs else data.observations
    next_pos = data.next_observations["pos"] if dict_obs else data.next_observations
    assert np.array_equal(next_pos, pos + NEXT_STEP)  # same episode, next step: no pair crosses a boundary
    episode, next_step = pos[:, 0], next_pos[:, 1]
    assert np.array_equal(data.terminals, ((episode % 2 == 1) & (next_step == 3)).astype(np.float32))
    assert np.sum((next_step == 5) & (data.terminals == 0)) == 2  # the two truncated episodes' last steps
    validate_against_env(data, env.observation_space, env.action_space)


def test_minari_missing_dataset_says_how_to_get_it(minari_root):
    with pytest.raises(DatasetNotFoundError) as info:
        load_minari("D4RL/antmaze/large-diverse-v1")
    message = str(info.value)
    assert "minari download D4RL/antmaze/large-diverse-v1" in message
    assert "download=True" in message and "MINARI_DATASETS_PATH" in message
    assert isinstance(info.value, FileNotFoundError)


def test_minari_download_true_fetches_then_loads(minari_root, monkeypatch):
    calls = []

    def fake_download(dataset_id):  # stands in for the network: creates the dataset locally
        calls.append(dataset_id)
        create_minari_dataset(dataset_id, gym.wrappers.TimeLimit(CountingEnv(), max_episode_steps=5), n_episodes=1)

    monkeypatch.setattr(minari, "download_dataset", fake_download)
    data = load_minari("test/downloaded-v0", download=True)
    assert calls == ["test/downloaded-v0"] and len(data) == 5
    load_minari("test/downloaded-v0", download=True)  # present now: no second download
    assert calls == ["test/downloaded-v0"]


def test_minari_not_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(ImportError, match=r'pip install "sb3_expo\[offline\]"'):
        load_minari("test/anything-v0")


# --------------------------------------------------------------------------------------------- D4RL HDF5

# (length, how it ends): the last row of the file ends a terminal episode.
D4RL_EPISODES = [(5, "timeout"), (3, "terminal"), (4, "timeout"), (2, "terminal")]


def write_d4rl_file(path, episodes=D4RL_EPISODES, next_observations=False, **overrides):
    """A D4RL-layout file whose observations are (episode, step)."""
    obs, terminals, timeouts = [], [], []
    for episode, (length, end) in enumerate(episodes):
        obs += [[episode, step] for step in range(length)]
        terminals += [0] * (length - 1) + [end == "terminal"]
        timeouts += [0] * (length - 1) + [end == "timeout"]
    n = len(obs)
    arrays = {
        "observations": np.array(obs, dtype=np.float32),
        "actions": np.linspace(-1, 1, 2 * n, dtype=np.float32).reshape(n, 2),
        "rewards": np.arange(n, dtype=np.float32),
        "terminals": np.array(terminals, dtype=bool),
        "timeouts": np.array(timeouts, dtype=bool),
        "infos/qpos": np.zeros((n, 3)),
    }
    if next_observations:
        arrays["next_observations"] = arrays["observations"] + NEXT_STEP
    arrays.update(overrides)
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            if value is not None:
                file[key] = value
    return path


def test_d4rl_without_next_observations_never_crosses_episodes(tmp_path):
    data = load_d4rl_hdf5(write_d4rl_file(tmp_path / "d.hdf5"))
    # 14 rows; dropped: the last step of both timeout episodes (next obs unknown) and the file's last row
    assert len(data) == 14 - 3
    assert data.observations.shape == (11, 2) and data.actions.shape == (11, 2)
    pos = data.observations
    assert not np.any(np.all(pos == [0, 4], axis=1)) and not np.any(np.all(pos == [2, 3], axis=1))
    assert np.flatnonzero(data.terminals).tolist() == [np.flatnonzero(np.all(pos == [1, 2], axis=1))[0]]
    live = data.terminals == 0
    assert np.array_equal(data.next_observations[live], pos[live] + NEXT_STEP)


def test_d4rl_with_next_observations_keeps_every_row(tmp_path):
    data = load_d4rl_hdf5(write_d4rl_file(tmp_path / "d.hdf5", next_observations=True))
    assert len(data) == 14
    assert np.array_equal(data.next_observations, data.observations + NEXT_STEP)
    timeout_rows = np.all(data.observations == [0, 4], axis=1) | np.all(data.observations == [2, 3], axis=1)
    assert not data.terminals[timeout_rows].any()  # timeouts are not terminals
    assert data.terminals.sum() == 2


def test_d4rl_file_ending_with_a_timeout(tmp_path):
    data = load_d4rl_hdf5(write_d4rl_file(tmp_path / "d.hdf5", episodes=[(3, "terminal"), (4, "timeout")]))
    assert len(data) == 3 + 3 and data.terminals.sum() == 1
    assert np.array_equal(data.next_observations[3:], data.observations[3:] + NEXT_STEP)


def test_d4rl_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.hdf5"):
        load_d4rl_hdf5(tmp_path / "nowhere.hdf5")
    (tmp_path / "text.hdf5").write_text("not an HDF5 file")
    (tmp_path / "empty.hdf5").write_bytes(b"")
    for name in ("text.hdf5", "empty.hdf5"):
        with pytest.raises(ValueError, match="not a readable HDF5 file"):
            load_d4rl_hdf5(tmp_path / name)
    with pytest.raises(ValueError, match="no 'actions'"):
        load_d4rl_hdf5(write_d4rl_file(tmp_path / "a.hdf5", actions=None))
    with pytest.raises(ValueError, match="neither 'timeouts' nor 'next_observations'"):
        load_d4rl_hdf5(write_d4rl_file(tmp_path / "b.hdf5", timeouts=None))
    with pytest.raises(ValueError, match="inconsistent lengths"):
        load_d4rl_hdf5(write_d4rl_file(tmp_path / "c.hdf5", rewards=np.zeros(13, dtype=np.float32)))
    empty = {key: np.zeros((0, 2)) for key in ("observations", "actions")}
    empty.update({key: np.zeros(0) for key in ("rewards", "terminals", "timeouts")})
    with pytest.raises(ValueError, match="holds no steps"):
        load_d4rl_hdf5(write_d4rl_file(tmp_path / "e.hdf5", **empty))


# ------------------------------------------------------------------------------------------ robomimic HDF5

NEXT_STEP_FLAT = np.array([0, 1, 0, 1, 0], dtype=np.float32)  # object (demo, step), robot0_eef_pos (demo, step, -1)
ROBOMIMIC_DEMOS = {"demo_10": 5, "demo_0": 3, "demo_2": 4}  # written out of order on purpose


def write_robomimic_file(path, demos=ROBOMIMIC_DEMOS, next_obs=True, dones_at_end=True):
    """A robomimic-layout file: ``object`` = (demo, step), ``robot0_eef_pos`` = (demo, step, -1), plus an image."""
    with h5py.File(path, "w") as file:
        for name, length in demos.items():
            demo, steps = int(name.split("_")[1]), np.arange(length + 1)
            group = file.create_group(f"data/{name}")
            obs = {
                "object": np.stack([np.full(length + 1, demo), steps], axis=1),
                "robot0_eef_pos": np.stack([np.full(length + 1, demo), steps, -np.ones(length + 1)], axis=1),
                "agentview_image": np.zeros((length + 1, 4, 4, 3), dtype=np.uint8),
            }
            for key, value in obs.items():
                group[f"obs/{key}"] = value[:-1]
                if next_obs:
                    group[f"next_obs/{key}"] = value[1:]
            group["actions"] = np.full((length, 7), 0.5)
            group["rewards"] = np.eye(length)[-1]
            group["dones"] = np.eye(length)[-1] * dones_at_end
            group.attrs["num_samples"] = length
    return path


def test_robomimic_demos_in_numerical_order_and_keys(tmp_path):
    data = load_robomimic_hdf5(write_robomimic_file(tmp_path / "r.hdf5"))
    assert len(data) == 3 + 4 + 5
    # sorted keys, image left out: object (2) then robot0_eef_pos (3)
    assert data.observations.shape == (12, 5) and data.actions.shape == (12, 7)
    assert data.observations[:, 0].tolist() == [0] * 3 + [2] * 4 + [10] * 5  # demo_2 before demo_10
    assert np.array_equal(data.observations[:, :2], data.observations[:, 2:4])
    assert np.array_equal(data.next_observations[:, :2], data.observations[:, :2] + NEXT_STEP)
    assert np.flatnonzero(data.terminals).tolist() == [2, 6, 11]  # dones: each demo's last step

    data = load_robomimic_hdf5(tmp_path / "r.hdf5", obs_keys=["robot0_eef_pos", "object"])
    assert data.observations.shape == (12, 5) and np.all(data.observations[:, 2] == -1)


def test_robomimic_without_next_obs(tmp_path):
    data = load_robomimic_hdf5(write_robomimic_file(tmp_path / "r.hdf5", next_obs=False))
    assert len(data) == 12 and data.terminals.sum() == 3
    live = data.terminals == 0
    assert np.array_equal(data.next_observations[live], data.observations[live] + NEXT_STEP_FLAT)
    # a demo that does not end in `done` loses its last step: its next observation is unknown
    data = load_robomimic_hdf5(write_robomimic_file(tmp_path / "s.hdf5", next_obs=False, dones_at_end=False))
    assert len(data) == 12 - 3 and not data.terminals.any()
    assert np.array_equal(data.next_observations, data.observations + NEXT_STEP_FLAT)


def test_robomimic_errors(tmp_path):
    path = write_robomimic_file(tmp_path / "r.hdf5")
    with pytest.raises(ValueError, match="data/demo_0/obs has no 'gripper_qpos'"):
        load_robomimic_hdf5(path, obs_keys=["object", "gripper_qpos"])
    with pytest.raises(FileNotFoundError, match=r"nowhere\.hdf5"):
        load_robomimic_hdf5(tmp_path / "nowhere.hdf5")
    (tmp_path / "bad.hdf5").write_bytes(b"\x89HDF garbage")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        load_robomimic_hdf5(tmp_path / "bad.hdf5")
    with h5py.File(tmp_path / "d4rl.hdf5", "w") as file:
        file["observations"] = np.zeros((3, 2))
    with pytest.raises(ValueError, match="no 'data' group"):
        load_robomimic_hdf5(tmp_path / "d4rl.hdf5")
    with h5py.File(path, "a") as file:
        del file["data/demo_2/rewards"]
        file["data/demo_2/rewards"] = np.zeros(7)
    with pytest.raises(ValueError, match="data/demo_2: arrays have inconsistent lengths"):
        load_robomimic_hdf5(path)


def test_robomimic_filter_key_reads_the_masked_demos(tmp_path):
    path = write_robomimic_file(tmp_path / "r.hdf5")
    with h5py.File(path, "a") as file:  # robomimic's split_train_val.py writes byte strings, in any order
        file["mask/train"] = np.array([b"demo_10", b"demo_0"])
        file["mask/valid"] = np.array([b"demo_2"])
    train = load_robomimic_hdf5(path, filter_key="train")
    assert len(train) == 3 + 5 and train.observations[:, 0].tolist() == [0] * 3 + [10] * 5  # numerical order
    valid = load_offline_dataset(path, filter_key="valid")  # what EXPO's offline_dataset_kwargs pass on
    assert len(valid) == 4 and np.all(valid.observations[:, 0] == 2)
    assert len(load_robomimic_hdf5(path)) == 12  # no filter key: every demo

    with pytest.raises(ValueError, match=r"no filter key 'test' \(mask/test\); its filter keys: train, valid"):
        load_robomimic_hdf5(path, filter_key="test")
    with pytest.raises(ValueError, match=r"its filter keys: none \(the file has no 'mask' group\)"):
        load_robomimic_hdf5(write_robomimic_file(tmp_path / "plain.hdf5"), filter_key="train")
    with h5py.File(path, "a") as file:
        file["mask/broken"] = np.array([b"demo_0", b"demo_7"])
    with pytest.raises(ValueError, match=r"mask/broken lists demos that 'data' does not hold: \['demo_7'\]"):
        load_robomimic_hdf5(path, filter_key="broken")


# ------------------------------------------------------------------------------- validation and helpers


@pytest.fixture
def d4rl_data(tmp_path):
    return load_d4rl_hdf5(write_d4rl_file(tmp_path / "d.hdf5", next_observations=True))


BOX_OBS = spaces.Box(-np.inf, np.inf, (2,), np.float32)
ACTIONS = spaces.Box(-1.0, 1.0, (2,), np.float32)


def test_validate_space_mismatches_name_field_and_shapes(d4rl_data):
    validate_against_env(d4rl_data, BOX_OBS, ACTIONS)
    with pytest.raises(ValueError, match=r"^observations: .*shape \(2,\) .*shape \(3,\)"):
        validate_against_env(d4rl_data, spaces.Box(-1, 1, (3,)), ACTIONS)
    with pytest.raises(ValueError, match=r"^actions: .*shape \(2,\) .*shape \(4,\)"):
        validate_against_env(d4rl_data, BOX_OBS, spaces.Box(-1, 1, (4,)))
    with pytest.raises(ValueError, match="observation space is a Dict"):
        validate_against_env(d4rl_data, spaces.Dict({"pos": BOX_OBS}), ACTIONS)


def test_validate_dict_observations(d4rl_data):
    obs = {"pos": d4rl_data.observations, "goal": np.zeros((14, 1))}
    data = OfflineTransitions(obs, d4rl_data.actions, d4rl_data.rewards, obs, d4rl_data.terminals)
    goal = spaces.Box(-1, 1, (1,))
    validate_against_env(data, spaces.Dict({"pos": BOX_OBS, "goal": goal}), ACTIONS)
    with pytest.raises(ValueError, match=r"keys \['goal', 'pos'\] .*keys \['pos'\]"):
        validate_against_env(data, spaces.Dict({"pos": BOX_OBS}), ACTIONS)
    with pytest.raises(ValueError, match=r"observations\['goal'\]: .*shape \(1,\) .*shape \(2,\)"):
        validate_against_env(data, spaces.Dict({"pos": BOX_OBS, "goal": spaces.Box(-1, 1, (2,))}), ACTIONS)
    with pytest.raises(ValueError, match="data is a dict"):
        validate_against_env(data, BOX_OBS, ACTIONS)


def test_validate_non_finite_and_out_of_bounds(tmp_path):
    rewards = np.arange(14, dtype=np.float32)
    rewards[[3, 5]] = [np.nan, np.inf]
    data = load_d4rl_hdf5(write_d4rl_file(tmp_path / "nan.hdf5", next_observations=True, rewards=rewards))
    with pytest.raises(ValueError, match="rewards: 2 of 14 rows contain NaN or inf"):
        validate_against_env(data, BOX_OBS, ACTIONS)

    actions = np.zeros((14, 2), dtype=np.float32)
    actions[4, 1], actions[6, 0] = 1.00005, -1.5  # the first is within the tolerance
    data = load_d4rl_hdf5(write_d4rl_file(tmp_path / "oob.hdf5", next_observations=True, actions=actions))
    with pytest.raises(ValueError, match="actions: 1 of 14 rows lie outside the action space bounds"):
        validate_against_env(data, BOX_OBS, ACTIONS)
    validate_against_env(data, BOX_OBS, spaces.Box(-2.0, 2.0, (2,), np.float32))


def test_scale_actions_matches_sb3():
    space = spaces.Box(np.array([-2.0, 0.0], dtype=np.float32), np.array([2.0, 10.0], dtype=np.float32))
    actions = np.array([[-2.0, 0.0], [2.0, 10.0], [1.0, 2.5]], dtype=np.float32)
    scaled = scale_actions(actions, space)
    assert scaled.dtype == np.float32
    assert np.allclose(scaled, [[-1, -1], [1, 1], [0.5, -0.5]])
    assert np.allclose(scaled, BasePolicy.scale_action(types.SimpleNamespace(action_space=space), actions))


def test_reward_transform():
    antmaze = RewardTransform(shift=-1.0)
    assert np.array_equal(antmaze(np.array([0.0, 1.0])), [-1.0, 0.0])
    assert th.equal(RewardTransform(scale=2.0, shift=0.5)(th.tensor([1.0])), th.tensor([2.5]))
    assert RewardTransform().is_identity and not antmaze.is_identity


def test_offline_transitions_layout():
    data = OfflineTransitions(np.zeros((3, 2)), np.zeros((3, 1)), np.zeros(3), np.zeros((3, 2)), np.zeros(3))
    assert len(data) == 3 and data.observations.dtype == np.float32 and data.actions.dtype == np.float32
    with pytest.raises(ValueError, match="inconsistent lengths"):
        OfflineTransitions(np.zeros((3, 2)), np.zeros((3, 1)), np.zeros(4), np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="actions must be"):
        OfflineTransitions(np.zeros((3, 2)), np.zeros(3), np.zeros(3), np.zeros((3, 2)), np.zeros(3))
