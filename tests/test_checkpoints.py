"""
Atomic saves: a process killed at any instant of save() leaves the previous model or the new one, never a broken file;
concurrent saves to one path leave one complete file. Checkpoints: resume unpickles nothing, and every file is checked.
"""

import base64
import io
import json
import multiprocessing
import os
import pathlib
import pickle
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY

from sb3_expo import EXPO
from sb3_expo.buffers import OfflineReplayBuffer
from sb3_expo.checkpoint_data import read_zip_data
from sb3_expo.checkpoints import (
    CHECKPOINT_FILES,
    HASHED_FILES,
    CheckpointCallback,
    CheckpointCorruptedError,
    latest_checkpoint,
    resume,
    save_checkpoint,
    write_atomically,
)
from sb3_expo.safe_state import verify_manifest, write_manifest

# Saves a model big enough that one save takes a while, over and over, printing a line before the first.
SAVER = """
import sys, torch as th
th.set_num_threads(1)
from sb3_expo import EXPO
model = EXPO("MlpPolicy", "Pendulum-v1", n_critics=10, policy_kwargs=dict(net_arch=[512, 512], denoiser_width=512),
             learning_starts=10, device="cpu")
model.save(sys.argv[1])
print("saved once", flush=True)
for version in range(1000):
    model.save(sys.argv[1])
"""


def test_write_atomically_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(b"old")

    def fail(file):
        file.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, "zip", fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.zip"]  # no temporary file left behind
    write_atomically(tmp_path / "model", "zip", lambda file: file.write(b"new"))  # SB3's rule: the suffix is added
    assert path.read_bytes() == b"new"


def test_save_and_replay_buffer_round_trip_through_the_temporary_file(tmp_path, tiny_kwargs):
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    model.learn(60)
    model.save(tmp_path / "model")
    model.save_replay_buffer(tmp_path / "buffer")
    assert sorted(os.listdir(tmp_path)) == ["buffer.pkl", "model.zip"]
    loaded = EXPO.load(tmp_path / "model.zip")
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert loaded.replay_buffer.size() == model.replay_buffer.size()
    for a, b in zip(model.policy.parameters(), loaded.policy.parameters()):
        assert th.equal(a, b)


@pytest.mark.slow  # four processes with large models
def test_a_process_killed_while_saving_never_leaves_a_broken_model(tmp_path):
    path = tmp_path / "model.zip"
    rng = random.Random(0)
    for _ in range(4):
        process = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "saved once"  # a good file exists: the kill lands in a rewrite
        time.sleep(rng.uniform(0.0, 1.0))  # somewhere inside one of the saves that replace it
        process.send_signal(signal.SIGKILL)
        process.wait()
        EXPO.load(path, device="cpu")  # a complete model, never a truncated one


# ------------------------------------------------------------------- checkpoints as data, checked, and concurrent saves


class Payload:
    """Unpickling this creates ``marker``: the proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory):
    """One checkpoint of a tiny EXPO on 20-step Pendulum episodes (copied by each test that changes it)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    model = EXPO("MlpPolicy", gym.make("Pendulum-v1", max_episode_steps=20), **{**TINY, "learning_starts": 10})
    model.learn(30, callback=CheckpointCallback(20, folder, keep_last=None))
    return latest_checkpoint(folder)


def copied(checkpoint_folder, tmp_path):
    destination = tmp_path / checkpoint_folder.name
    shutil.copytree(checkpoint_folder, destination)
    return destination


def resume_short(path):
    return resume(path, gym.make("Pendulum-v1", max_episode_steps=20), device="cpu")


def refuse_unpickling(monkeypatch):
    """Any pickle.load(s) / cloudpickle.loads from here on fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for module, name in [(pickle, "loads"), (pickle, "load"), (cloudpickle, "loads")]:
        monkeypatch.setattr(module, name, refuse)


def test_a_checkpoint_resumes_and_holds_no_pickle_of_its_own(checkpoint_folder, monkeypatch):
    assert sorted(os.listdir(checkpoint_folder)) == sorted(CHECKPOINT_FILES)
    for name in CHECKPOINT_FILES:
        if name.endswith(".json"):
            json.loads((checkpoint_folder / name).read_text())  # plain JSON
        elif name.endswith(".npz"):
            with np.load(checkpoint_folder / name, allow_pickle=False) as arrays:  # plain arrays
                [arrays[key] for key in arrays.files]
    read_zip_data(checkpoint_folder / "model.zip")  # every tensor loads with weights_only=True
    refuse_unpickling(monkeypatch)
    model = resume_short(checkpoint_folder)
    assert model.num_timesteps == 20 and model.replay_buffer.pos == 20


@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_a_flipped_byte_in_any_checkpoint_file_is_reported_by_name(checkpoint_folder, tmp_path, name):
    folder = copied(checkpoint_folder, tmp_path)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptedError, match=f"{name} is corrupted.*earlier checkpoint"):
        resume_short(folder)


@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_a_truncated_or_missing_file_is_reported_by_name(checkpoint_folder, tmp_path, name):
    folder = copied(checkpoint_folder, tmp_path)
    (folder / name).write_bytes(b"")
    with pytest.raises(CheckpointCorruptedError, match=name):
        resume_short(folder)
    (folder / name).unlink()
    with pytest.raises(CheckpointCorruptedError, match=f"incomplete checkpoint: {name} missing"):
        resume_short(folder)


@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_a_payload_in_any_checkpoint_file_is_not_executed(checkpoint_folder, tmp_path, name):
    folder = copied(checkpoint_folder, tmp_path)
    marker = tmp_path / "payload_ran"
    (folder / name).write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointCorruptedError, match=name):
        resume_short(folder)
    assert not marker.exists()


def rewrite_zip(path, change):
    """Rewrite the zip ``path`` with ``change(name, content) -> content`` applied to each member."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, change(name, content))


def serialized_payload(marker):
    return {":type:": "<class 'Payload'>", ":serialized:": base64.b64encode(cloudpickle.dumps(Payload(marker))).decode()}


def payload_in_every_pickled_entry(path, marker):
    def change(name, content):
        if name != "data":
            return content
        data = json.loads(content)
        return json.dumps({key: serialized_payload(marker) if isinstance(item, dict) and ":serialized:" in item else item
                           for key, item in data.items()})  # fmt: skip

    rewrite_zip(path, change)


def payload_in_a_new_entry(path, marker):
    rewrite_zip(path, lambda name, content: json.dumps({**json.loads(content), "evil": serialized_payload(marker)})
                if name == "data" else content)  # fmt: skip


def payload_in_the_weights(path, marker):
    pickled = io.BytesIO()
    th.save(Payload(marker), pickled)
    rewrite_zip(path, lambda name, content: pickled.getvalue() if name == "policy.pth" else content)


def payload_as_an_unlisted_object(path, marker):
    """JSON that names a class outside the codec's list, built with arguments that would run a command."""
    data = json.loads(path.read_text())
    command = {"__object__": "subprocess:Popen", "arguments": [["touch", str(marker)]]}
    data["attributes" if "attributes" in data else "zip_objects"]["pos"] = command
    path.write_text(json.dumps(data))


def payload_as_a_named_class(path, marker):
    data = json.loads(path.read_text())
    data["zip_objects"]["policy_class"] = {"__class__": "subprocess:Popen"}
    path.write_text(json.dumps(data))


PICKLE_BYTES = [(name, lambda path, marker: path.write_bytes(pickle.dumps(Payload(marker))), name) for name in HASHED_FILES]
OBJECT_ARRAY = lambda path, marker: np.savez(path, a0=np.array([Payload(marker)], dtype=object))  # noqa: E731
PAYLOADS = [  # (file, how the payload is written, what the error says: None if resume ignores the payload)
    *PICKLE_BYTES,
    ("model.zip", payload_in_every_pickled_entry, None),
    ("model.zip", payload_in_a_new_entry, "holds evil"),
    ("model.zip", payload_in_the_weights, "model.zip is no model zip that loads without unpickling"),
    ("replay_buffer.json", payload_as_an_unlisted_object, "replay_buffer.json is unreadable"),
    ("replay_buffer.npz", OBJECT_ARRAY, "replay_buffer.npz is unreadable"),
    ("state.json", payload_as_an_unlisted_object, "state.json is unreadable"),
    ("state.json", payload_as_a_named_class, "state.json is unreadable.*not a network"),
    ("arrays.npz", OBJECT_ARRAY, "arrays.npz is unreadable"),
]


@pytest.mark.parametrize(("name", "write", "error"), PAYLOADS)
def test_a_payload_with_a_matching_manifest_is_not_executed(checkpoint_folder, tmp_path, name, write, error):
    """Every file is read as data: a payload is refused or ignored, never run, even by someone who rewrote the manifest."""
    folder = copied(checkpoint_folder, tmp_path)
    marker = tmp_path / "payload_ran"
    write(folder / name, marker)
    write_manifest(folder, HASHED_FILES)
    if error is None:
        assert resume_short(folder).num_timesteps == 20
    else:
        with pytest.raises(ValueError, match=error):
            resume_short(folder)
    assert not marker.exists()


@pytest.mark.parametrize("pickled", ["state.pkl", "replay_buffer.pkl"])
def test_a_checkpoint_of_a_pickled_format_is_refused_with_the_reason(checkpoint_folder, tmp_path, pickled):
    folder = copied(checkpoint_folder, tmp_path)
    for name in ("replay_buffer.json", "replay_buffer.npz") if pickled == "replay_buffer.pkl" else ("state.json",):
        (folder / name).unlink()
    (folder / pickled).write_bytes(pickle.dumps(Payload(tmp_path / "payload_ran")))
    for path in (folder, tmp_path):  # the checkpoint, and the folder of checkpoints
        with pytest.raises(CheckpointCorruptedError, match=f"earlier sb3_expo \\({pickled}\\).*no longer unpickles"):
            resume_short(path)
    assert not (tmp_path / "payload_ran").exists()


def test_a_value_that_is_no_data_is_asked_for_by_name(tmp_path, tiny_kwargs):
    """A learning-rate function cannot be stored as data: resume names it, and takes it as an argument."""

    def schedule(progress):
        return 1e-3 * progress

    model = EXPO("MlpPolicy", gym.make("Pendulum-v1", max_episode_steps=20), learning_rate=schedule,
                 **{**tiny_kwargs, "learning_starts": 10})  # fmt: skip
    model.learn(30, callback=CheckpointCallback(20, tmp_path))
    with pytest.raises(ValueError, match=r"learning_rate \(<class 'function'>\).*resume\(path, env, learning_rate="):
        resume_short(tmp_path)
    resumed = resume(tmp_path, gym.make("Pendulum-v1", max_episode_steps=20), device="cpu", learning_rate=schedule)
    assert resumed.learning_rate is schedule and resumed.lr_schedule(0.5) == 5e-4


def test_a_plain_buffer_becomes_the_mixing_buffer_a_resume_asks_for(checkpoint_folder):
    """As load_replay_buffer adopts it: the same rows, the model's reward transform, and a warning that says so."""
    with pytest.warns(UserWarning, match="reward_transform"):
        model = resume(checkpoint_folder, gym.make("Pendulum-v1", max_episode_steps=20), device="cpu", reward_shift=-1.0)
    assert isinstance(model.replay_buffer, OfflineReplayBuffer) and model.replay_buffer.reward_transform.shift == -1.0
    assert model.replay_buffer.pos == 20 and not model.replay_buffer.successful.any()


def save_after(barrier, model, path):
    barrier.wait()
    model.save(path)


def test_concurrent_saves_to_one_path_leave_one_loadable_file(tmp_path, tiny_kwargs):
    """20 threads, then 20 processes, save one model to one path at once: a loadable zip, and no temporary file."""
    model = EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    path = tmp_path / "model.zip"
    barrier = threading.Barrier(20)
    threads = [threading.Thread(target=save_after, args=(barrier, model, path)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert os.listdir(tmp_path) == ["model.zip"]
    EXPO.load(path, device="cpu")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(20)
    processes = [context.Process(target=save_after, args=(barrier, model, path)) for _ in range(20)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * 20
    assert os.listdir(tmp_path) == ["model.zip"]
    EXPO.load(path, device="cpu")


def test_concurrent_checkpoints_to_one_folder_leave_one_complete_checkpoint(checkpoint_folder, tmp_path):
    model = resume_short(checkpoint_folder)
    destination = tmp_path / "expo_20_steps"
    env_rng = json.loads((checkpoint_folder / "state.json").read_text())["env_rng"]
    threads = [threading.Thread(target=save_checkpoint, args=(model, destination, env_rng)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert os.listdir(tmp_path) == ["expo_20_steps"]
    verify_manifest(destination, HASHED_FILES)


def test_stale_temporary_files_of_killed_saves_are_removed(tmp_path, tiny_kwargs):
    dead = tmp_path / ".model.zip.4194311-1-0a0b0c0d.tmp"  # above Linux's largest pid: no such process
    old_format = tmp_path / ".model.zip.4194312.tmp"
    live = tmp_path / f".model.zip.{os.getpid()}-1-0a0b0c0d.tmp"  # a save in progress in this process
    recent = tmp_path / ".model.zip.4194313-1-0a0b0c0d.tmp"  # maybe another machine's save, still being written
    for leftover in (dead, old_format, live, recent):
        leftover.write_bytes(b"half a model")
    for leftover in (dead, old_format, live):
        os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    EXPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs).save(tmp_path / "model.zip")
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, recent.name, "model.zip"])


def test_the_objects_of_a_model_zip_round_trip_as_data(tmp_path):
    """What SB3 cloudpickles into a zip comes back equal from JSON and .npz; code and unlisted objects are no data."""
    from collections import deque

    from gymnasium import spaces
    from rl_zoo3.utils import SimpleLinearSchedule
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise, VectorizedActionNoise
    from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
    from stable_baselines3.common.utils import FloatSchedule, LinearSchedule

    from sb3_expo.policies import ExpoPolicy
    from sb3_expo.safe_state import is_data, read_data, write_data

    space = spaces.Dict({"box": spaces.Box(-1, 1, (2,)), "discrete": spaces.Discrete(3), "bits": spaces.MultiBinary(2),
                         "multi": spaces.MultiDiscrete([2, 3])})  # fmt: skip
    space.sample()  # its generators are in use
    noise = VectorizedActionNoise(OrnsteinUhlenbeckActionNoise(np.zeros(2), np.ones(2)), 2)
    values = {"space": space, "noise": noise, "normal": NormalActionNoise(np.zeros(1), np.ones(1)),
              "schedule": FloatSchedule(LinearSchedule(1e-3, 1e-4, 0.5)), "zoo": SimpleLinearSchedule(3e-4),
              "episodes": deque([{"r": 1.5, "l": 3}], maxlen=5), "train_freq": TrainFreq(4, TrainFrequencyUnit.EPISODE),
              "path": pathlib.Path("data/x.hdf5"), "scalar": np.float32(0.5), "policy_class": ExpoPolicy,
              "policy_kwargs": {"activation_fn": th.nn.ELU, "optimizer_class": th.optim.AdamW}}  # fmt: skip
    write_data(tmp_path, ("values.json", "values.npz"), values)
    loaded = read_data(tmp_path, ("values.json", "values.npz"))
    sampled, expected = loaded["space"].sample(), space.sample()  # the same generators' states
    assert loaded["space"] == space and all(np.array_equal(sampled[key], expected[key]) for key in expected)

    def draw(noise):  # OU noise draws from numpy's global generator, and goes on from its previous value
        np.random.seed(0)
        return noise()

    assert repr(loaded["noise"]) == repr(noise) and np.array_equal(draw(loaded["noise"]), draw(noise))
    assert loaded["schedule"](0.75) == values["schedule"](0.75) and loaded["zoo"](0.5) == values["zoo"](0.5)
    assert loaded["episodes"] == values["episodes"] and loaded["episodes"].maxlen == 5
    assert loaded["train_freq"] == values["train_freq"] and loaded["path"] == values["path"]
    assert type(loaded["scalar"]) is np.float32 and loaded["policy_class"] is ExpoPolicy
    assert loaded["policy_kwargs"] == values["policy_kwargs"]
    assert not is_data(lambda progress: progress) and not is_data(Payload(tmp_path)) and not is_data(pickle.Pickler)
