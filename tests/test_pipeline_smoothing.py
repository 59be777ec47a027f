"""Temporal hysteresis: noise flicker is suppressed, persistent changes pass after k frames."""

from __future__ import annotations

import numpy as np
import pytest

from rtseg.pipeline.smoothing import HysteresisSmoother, flicker


def noisy_sequence(n: int, p_flip: float, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """A static 3-class scene (64x96) where each frame flips a random share of pixels to a random class."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((64, 96), np.uint8)
    truth[:, 32:64] = 1
    truth[32:, 64:] = 2
    frames = []
    for _ in range(n):
        f = truth.copy()
        flip = rng.random(truth.shape) < p_flip
        f[flip] = rng.integers(0, 3, int(flip.sum()), dtype=np.uint8)
        frames.append(f)
    return frames, truth


def mean_flicker(seq: list[np.ndarray]) -> float:
    return float(np.mean([flicker(a, b) for a, b in zip(seq, seq[1:], strict=False)]))


def test_flicker_is_share_of_changed_pixels() -> None:
    a = np.zeros((10, 10), np.uint8)
    b = a.copy()
    b[0, :5] = 3
    assert flicker(a, b) == pytest.approx(0.05)
    assert flicker(a, a) == 0.0
    with pytest.raises(ValueError):
        flicker(a, np.zeros((5, 5), np.uint8))


def test_hysteresis_reduces_noise_flicker_by_a_large_factor() -> None:
    frames, truth = noisy_sequence(60, p_flip=0.05)
    sm = HysteresisSmoother(3)
    shown = [sm.update(f) for f in frames]
    raw, smooth = mean_flicker(frames), mean_flicker(shown)
    assert raw > 0.04  # ~2 * 5% * 2/3 of pixels change per frame
    # a noise flip survives 3 frames on the same wrong class only with p ~ (0.05/3)^2 per frame
    assert smooth < raw / 20, (raw, smooth)
    # and what is shown stays close to the truth
    assert np.mean(shown[-1] != truth) < 0.01


def test_persistent_change_passes_after_exactly_k_frames() -> None:
    k = 4
    sm = HysteresisSmoother(k)
    base = np.zeros((8, 8), np.uint8)
    moved = base.copy()
    moved[2:6, 2:6] = 5  # an object appears and stays
    assert np.array_equal(sm.update(base), base)
    for i in range(1, k):
        out = sm.update(moved)
        assert np.array_equal(out, base), f"changed after {i} frames, expected after {k}"
    assert np.array_equal(sm.update(moved), moved)
    assert np.array_equal(sm.update(moved), moved)


def test_interrupted_challenger_restarts_its_count() -> None:
    sm = HysteresisSmoother(3)
    a = np.zeros((2, 2), np.uint8)
    b = np.ones((2, 2), np.uint8)
    c = np.full((2, 2), 2, np.uint8)
    sm.update(a)
    sm.update(b)
    sm.update(b)
    sm.update(c)  # a different challenger resets the count
    assert np.array_equal(sm.update(b), a)
    assert np.array_equal(sm.update(b), a)
    assert np.array_equal(sm.update(b), b)
    # a frame agreeing with what is shown clears the challenger too
    sm.update(c)
    sm.update(c)
    sm.update(b)
    assert np.array_equal(sm.update(c), b)


def test_k1_is_identity_and_reset_forgets() -> None:
    frames, _ = noisy_sequence(5, p_flip=0.2, seed=1)
    sm = HysteresisSmoother(1)
    for f in frames:
        assert np.array_equal(sm.update(f), f)
    sm3 = HysteresisSmoother(3)
    sm3.update(frames[0])
    sm3.reset()
    assert np.array_equal(sm3.update(frames[1]), frames[1])


def test_output_is_a_copy_and_bad_input_is_refused() -> None:
    sm = HysteresisSmoother(2)
    a = np.zeros((4, 4), np.uint8)
    out = sm.update(a)
    out[:] = 9
    assert np.array_equal(sm.update(a), a)
    with pytest.raises(ValueError):
        sm.update(np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError):
        HysteresisSmoother(0)
