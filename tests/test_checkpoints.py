"""Atomic saves: a process killed at any instant of save() leaves the previous model or the new one, never a broken file."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch as th

from sb3_expo import EXPO
from sb3_expo.checkpoints import write_atomically

# Saves a model big enough that one save takes a while, over and over, printing a line before the first.
SAVER = """
import sys, torch as th
th.set_num_threads(1)
from sb3_expo import EXPO
model = EXPO("MlpPolicy", "Pendulum-v1", n_critics=10, policy_kwargs=dict(net_arch=[512, 512], denoiser_width=512),
             learning_starts=10, device="cpu")
print("saving", flush=True)
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


def test_a_process_killed_while_saving_never_leaves_a_broken_model(tmp_path):
    path = tmp_path / "model.zip"
    rng = random.Random(0)
    for _ in range(4):
        process = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "saving"
        time.sleep(rng.uniform(0.0, 1.0))  # somewhere inside one of the saves
        process.send_signal(signal.SIGKILL)
        process.wait()
        if path.exists():  # the first save may not have finished yet; then there is no file at all
            EXPO.load(path, device="cpu")  # a complete model, never a truncated one
    assert path.exists()
