"""
Atomic saves: a process killed at any instant of save() leaves the previous model or the new one, never a broken file;
concurrent saves to one path leave one complete file. Checkpoints: their state is data, and every file is checked.
"""

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

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY

from sb3_expo import EXPO
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


def test_a_checkpoint_resumes_and_holds_no_pickle_of_its_own(checkpoint_folder):
    assert sorted(os.listdir(checkpoint_folder)) == sorted(CHECKPOINT_FILES)
    json.loads((checkpoint_folder / "state.json").read_text())  # plain JSON
    np.load(checkpoint_folder / "arrays.npz", allow_pickle=False)  # plain arrays
    assert resume_short(checkpoint_folder).num_timesteps == 20


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
    with pytest.raises(CheckpointCorruptedError):
        resume_short(folder)
    assert not marker.exists()


def test_the_state_files_run_no_code_even_with_a_matching_manifest(checkpoint_folder, tmp_path):
    """state.json and arrays.npz are data: a payload is refused, not run, even by someone who rewrote the manifest."""
    marker = tmp_path / "payload_ran"
    for name, write in [
        ("state.json", lambda path: path.write_bytes(pickle.dumps(Payload(marker)))),
        ("arrays.npz", lambda path: np.savez(path, a0=np.array([Payload(marker)], dtype=object))),
    ]:
        folder = copied(checkpoint_folder, tmp_path / name)
        write(folder / name)
        write_manifest(folder, HASHED_FILES)
        with pytest.raises(CheckpointCorruptedError, match="unreadable state"):
            resume_short(folder)
        assert not marker.exists()


def test_a_checkpoint_of_the_pickled_format_is_refused_with_the_reason(checkpoint_folder, tmp_path):
    folder = copied(checkpoint_folder, tmp_path)
    for name in ("state.json", "arrays.npz", "manifest.json"):
        (folder / name).unlink()
    (folder / "state.pkl").write_bytes(pickle.dumps(Payload(tmp_path / "payload_ran")))
    with pytest.raises(CheckpointCorruptedError, match="no longer unpickles"):
        resume_short(folder)
    assert not (tmp_path / "payload_ran").exists()


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
