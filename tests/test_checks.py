"""sb3_expo.checks: non-finite losses stop before the optimiser step; batch sizes and image buffers are warned about."""

import warnings

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from sb3_expo.checks import (
    check_finite,
    check_image_observations,
    check_offline_batch_size,
    image_observation_warning,
    offline_batch_size_warning,
    replay_buffer_observation_bytes,
)


def checked_step(optimizer, loss, name, n_updates):
    """An optimiser step with check_finite between backward() and step(), as sb3_expo.update.guarded_step does."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    check_finite(loss, name, n_updates, [p for group in optimizer.param_groups for p in group["params"]])
    optimizer.step()


def tiny_model():
    th.manual_seed(0)
    layer = th.nn.Linear(3, 1)
    return layer, th.optim.Adam(layer.parameters(), lr=0.1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_raises_before_any_parameter_changes(bad):
    layer, optimizer = tiny_model()
    checked_step(optimizer, layer(th.ones(4, 3)).pow(2).mean(), "train/critic_loss", 0)  # a good step first
    before = [parameter.detach().clone() for parameter in layer.parameters()]
    moments = {key: value.clone() for key, value in optimizer.state[layer.weight].items()}
    loss = layer(th.ones(4, 3)).pow(2).mean() * bad  # >= 0, so +inf stays +inf
    with pytest.raises(FloatingPointError, match=f"train/critic_loss became {bad} at update 7.*step was not taken"):
        checked_step(optimizer, loss, "train/critic_loss", 7)
    assert all(th.equal(a, b) for a, b in zip(before, layer.parameters()))
    assert all(th.equal(moments[key], optimizer.state[layer.weight][key]) for key in moments)


def test_a_non_finite_gradient_of_a_finite_loss_raises():
    layer, _ = tiny_model()
    loss = layer(th.ones(4, 3)).mean()
    loss.backward()
    layer.weight.grad[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="the gradient of train/actor_loss became NaN or inf at update 3"):
        check_finite(loss, "train/actor_loss", 3, layer.parameters())
    check_finite(loss, "train/actor_loss", 3)  # the loss alone is finite


def test_a_finite_step_changes_the_parameters():
    layer, optimizer = tiny_model()
    before = layer.weight.detach().clone()
    checked_step(optimizer, layer(th.ones(4, 3)).pow(2).mean(), "train/base_loss", 0)
    assert not th.equal(before, layer.weight)


def test_a_batch_larger_than_the_offline_data_is_warned_about():
    assert offline_batch_size_warning(256, 256, 0.5) is None
    message = offline_batch_size_warning(256, 100, 0.5)
    assert "batch_size=256 is larger than the offline dataset (100 transitions)" in message
    assert "at least 156 of its 256 rows are duplicates" in message and "128 offline rows" in message
    with pytest.warns(UserWarning, match="larger than the offline dataset"):
        check_offline_batch_size(256, 100, 0.5)
    with pytest.raises(ValueError, match="holds no transitions"):
        offline_batch_size_warning(256, 0, 0.5)


def test_image_observations_are_warned_about_with_the_buffer_bytes():
    atari = spaces.Box(0, 255, (84, 84, 3), np.uint8)
    assert replay_buffer_observation_bytes(atari, 1_000_000) == 2 * 84 * 84 * 3 * 1_000_000
    assert replay_buffer_observation_bytes(atari, 1_000_000, optimize_memory_usage=True) == 84 * 84 * 3 * 1_000_000
    message = image_observation_warning(atari, 1_000_000)
    assert "flattened into 21168 inputs" in message and "42.3 GB (42336000000 bytes)" in message
    assert "optimize_memory_usage=True (halves it to 21.2 GB)" in message
    assert image_observation_warning(spaces.Box(-1, 1, (84, 84, 3), np.float32), 1000) is None  # not an image
    assert image_observation_warning(spaces.Box(-1, 1, (17,)), 1_000_000) is None
    with pytest.warns(UserWarning, match="Image observations"):
        check_image_observations(atari, 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_image_observations(spaces.Box(-1, 1, (17,)), 1000)


def test_expo_warns_about_a_batch_larger_than_its_offline_data(tiny_kwargs):
    from sb3_expo import EXPO
    from sb3_expo.data import OfflineTransitions

    rng = np.random.default_rng(0)
    data = OfflineTransitions(rng.normal(size=(10, 3)), rng.uniform(-2, 2, (10, 1)), np.zeros(10), rng.normal(size=(10, 3)),
                              np.zeros(10))  # fmt: skip
    with pytest.warns(UserWarning, match="larger than the offline dataset"):
        model = EXPO("MlpPolicy", "Pendulum-v1", offline_dataset=data, **tiny_kwargs)
    with pytest.warns(UserWarning, match="batch_size=12 is larger"):
        model.pretrain(1, batch_size=12)


def test_expo_warns_about_image_observations_before_allocating_the_buffer(tiny_kwargs):
    import gymnasium as gym

    from sb3_expo import EXPO

    class ImageEnv(gym.Env):
        observation_space = spaces.Box(0, 255, (84, 84, 3), np.uint8)
        action_space = spaces.Box(-1, 1, (2,), np.float32)

    with pytest.warns(UserWarning, match="Image observations"):
        EXPO("MlpPolicy", ImageEnv(), **{**tiny_kwargs, "buffer_size": 100})


def test_n_step_samples_are_refused_not_silently_one_step():
    """SB3's n-step buffers return per-row discounts; EXPO's one-step target would ignore them."""
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    from sb3_expo.update import Minibatch

    rows = th.zeros(4, 3)
    samples = ReplayBufferSamples(rows, th.zeros(4, 1), rows, th.zeros(4, 1), th.zeros(4, 1), th.full((4, 1), 0.9))
    with pytest.raises(ValueError, match="n-step"):
        Minibatch.from_samples(None, samples, gamma=0.99)


@pytest.mark.parametrize(
    ("recorded", "env_id", "warns"),
    [
        ("AntMaze_Large_Diverse_GR-v4", "sb3_expo/AntMaze-large-diverse-v1", False),  # the wrapped paper task
        ("AdroitHandPen-v1", "sb3_expo/AdroitHandPenBinary-v1", False),
        ("sb3_expo/PointMazeUMazeFixed-v0", "sb3_expo/PointMazeUMazeFixed-v0", False),
        ("PointMaze_UMaze-v3", "PointMaze_Medium-v3", True),
        ("FetchPush-v4", "FetchPickAndPlace-v4", True),
        (None, "Pendulum-v1", False),
    ],
)
def test_data_of_another_task_is_told_apart_from_a_wrapped_one(recorded, env_id, warns):
    from sb3_expo.checks import other_env_warning

    assert (other_env_warning(recorded, env_id) is not None) == warns
