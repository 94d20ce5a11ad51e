"""robosuite's Lift ended at success, its scripted expert and decoy, and the robomimic-format dataset recorded from them."""

import json
import os

import numpy as np
import pytest

robosuite = pytest.importorskip("robosuite")
h5py = pytest.importorskip("h5py")

from sb3_expo.data import load_offline_dataset, load_robomimic_hdf5, validate_against_env  # noqa: E402
from sb3_expo.tasks import lift  # noqa: E402
from sb3_expo.tasks.lift import (  # noqa: E402
    LIFT_DATASET,
    LIFT_ENV_ID,
    LIFT_OBS_KEYS,
    LiftExpert,
    build_lift_dataset,
    lift_dataset_path,
    make_lift_env,
)
from sb3_expo.tasks.recording import rollout_episode  # noqa: E402


@pytest.fixture(scope="module")
def env():
    env = make_lift_env()
    yield env
    env.close()


def test_registered_task(env):
    assert env.spec.id == LIFT_ENV_ID and env.spec.max_episode_steps == lift.LIFT_MAX_EPISODE_STEPS
    assert env.observation_space.shape == (19,) and env.action_space.shape == (7,)
    assert LIFT_OBS_KEYS == ("object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
    obs, info = env.reset(seed=3)
    assert info["is_success"] is False and env.observation_space.contains(obs)
    again, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    assert np.array_equal(obs, again) and not np.allclose(obs[lift.CUBE_POS], other[lift.CUBE_POS])  # seeded placement
    # The slices the controllers read are robosuite's observation.
    raw = env.unwrapped.env.observation_spec()
    np.testing.assert_allclose(other[lift.CUBE_POS], raw["cube_pos"], atol=1e-6)
    np.testing.assert_allclose(other[lift.EEF_QUAT], raw["robot0_eef_quat"], atol=1e-6)
    np.testing.assert_allclose(other[lift.GRIPPER_QPOS], raw["robot0_gripper_qpos"], atol=1e-6)
    _, reward, terminated, truncated, info = env.step(np.zeros(7, dtype=np.float32))
    assert reward == 0.0 and not terminated and not truncated and info["is_success"] is False


def test_expert_without_noise_lifts_the_cube(env):
    episode = rollout_episode(env, LiftExpert(env, noise_std=0.0), seed=11)
    assert episode["is_success"] and episode["terminations"][-1] and not any(episode["terminations"][:-1])
    assert episode["rewards"][-1] == 1.0 and sum(episode["rewards"]) == 1.0
    assert len(episode["rewards"]) < 60  # about 35 steps, well inside the 100


def test_recorded_dataset_loads_with_the_robomimic_loader(env, monkeypatch, tmp_path):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert lift_dataset_path() == tmp_path / "sb3_expo" / "robosuite-lift-mixed-v0.hdf5" == tmp_path / LIFT_DATASET
    # Seed 0 draws the decoy, then the expert twice.
    path = build_lift_dataset(n_episodes=3, expert_fraction=0.5, seed=0, check_episodes=1)
    assert path == lift_dataset_path() and os.path.isfile(LIFT_DATASET)

    data = load_robomimic_hdf5(path)
    validate_against_env(data, env.observation_space, env.action_space)
    same = load_offline_dataset(LIFT_DATASET)  # the default keys are the env's, in its order
    np.testing.assert_array_equal(same.observations, data.observations)
    ordered = load_robomimic_hdf5(path, obs_keys=LIFT_OBS_KEYS)
    np.testing.assert_array_equal(ordered.observations, data.observations)
    assert data.observations.shape[1:] == env.observation_space.shape and data.actions.shape[1:] == env.action_space.shape
    np.testing.assert_array_equal(data.terminals, data.rewards == 1.0)  # terminal exactly at success
    start, _ = env.reset(seed=0)  # the builder's env (another instance) started its first episode the same way
    np.testing.assert_array_equal(data.observations[0], start)
    assert data.observations.dtype == np.float32 and np.abs(data.actions).max() <= 1.0

    with h5py.File(path, "r") as file:
        demos = file["data"]
        assert sorted(demos) == ["demo_0", "demo_1", "demo_2"] and demos.attrs["total"] == len(data.rewards)
        env_args = json.loads(demos.attrs["env_args"])
        assert env_args["env_name"] == "Lift" and env_args["env_kwargs"]["robots"] == "Panda"
        assert env_args["env_kwargs"]["controller_configs"]["body_parts"]["right"]["type"] == "OSC_POSE"
        masks = {name: [demo.decode() for demo in file["mask"][name][()]] for name in file["mask"]}
        assert masks["other"] == ["demo_0"] and masks["expert"] == ["demo_1", "demo_2"]
        for name in masks["success"]:  # a successful demo ends at its first success
            dones = demos[name]["dones"][()]
            assert dones[-1] == 1 and dones[:-1].sum() == 0 and demos[name].attrs["num_samples"] == len(dones)
        for name in demos:
            np.testing.assert_array_equal(demos[name]["obs/object"][1:], demos[name]["next_obs/object"][:-1])
    assert masks["expert"] == masks["success"]  # the noisy expert lifts the cube in these two

    from benchmarks.learning.methods import load_offline
    from benchmarks.learning.tasks import get_task

    np.testing.assert_array_equal(load_offline(get_task("lift")).observations, data.observations)  # the benchmark's loader

    expert = load_robomimic_hdf5(path, filter_key="expert")
    assert expert.terminals.sum() == 2
    mtime = os.path.getmtime(path)
    assert build_lift_dataset(n_episodes=5) == path and os.path.getmtime(path) == mtime  # reused, not recorded again


def test_benchmark_task_loads_the_file_under_the_current_root(monkeypatch, tmp_path):
    from benchmarks.learning.methods import load_offline
    from benchmarks.learning.tasks import get_task

    task = get_task("lift")
    assert task.split == "held-out" and task.tuned == {} and task.reward_shift == -1.0
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert os.fspath(task.dataset_id) == os.fspath(lift_dataset_path())  # follows the variable set after import
    with pytest.raises(FileNotFoundError):
        load_offline(task)  # not built under this root
