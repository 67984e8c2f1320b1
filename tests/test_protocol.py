import numpy as np
import pytest

from scaleworld.atari.protocol import Protocol, preprocess_frames
from scaleworld.errors import ScaleworldError


def test_defaults_are_the_atari_100k_protocol():
    p = Protocol()
    assert p.to_dict() == {
        "frame_size": 64,
        "frame_skip": 4,
        "max_pool": True,
        "sticky_action_prob": 0.0,
        "max_episode_frames": 108_000,
        "noop_max": 30,
        "full_action_space": True,
    }
    assert Protocol.from_dict(p.to_dict()) == p


def test_bad_protocol_values_and_keys_are_rejected_with_the_key_name():
    with pytest.raises(ScaleworldError, match="protocol.sticky_action_prob"):
        Protocol(sticky_action_prob=1.5)
    with pytest.raises(ScaleworldError, match=r"unknown protocol key\(s\) \['frameskip'\]"):
        Protocol.from_dict({"frameskip": 4})


def test_preprocessing_is_area_averaging_and_exact_in_any_batch():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 210, 160, 3), dtype=np.uint8)
    batch = preprocess_frames(frames, 64)
    assert batch.shape == (5, 64, 64, 3) and batch.dtype == np.uint8
    for i in range(5):  # alone or batched: the same bytes
        assert np.array_equal(preprocess_frames(frames[i], 64), batch[i])
    flat = np.full((210, 160, 3), 77, np.uint8)
    assert (preprocess_frames(flat, 64) == 77).all()
    # an integer downscale is a plain block mean: 160 -> 32 columns is 5 x 5 blocks horizontally
    x = rng.integers(0, 256, (210, 160, 3), dtype=np.uint8)
    cols = preprocess_frames(x, 32)
    # output column 0 averages input columns 0..4 exactly (weights are equal within a block)
    wh = np.zeros(210)
    lo, hi = 0.0, 210 / 32
    for h in range(210):
        wh[h] = max(0.0, min(h + 1, hi) - max(h, lo))
    expected = (wh[:, None] * x[:, :5, 0].mean(axis=1)[:, None]).sum() / wh.sum()
    assert abs(int(cols[0, 0, 0]) - expected) <= 0.5 + 1e-9
