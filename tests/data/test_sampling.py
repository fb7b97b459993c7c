"""Clip sampling: CVRL's interval distribution between the clips of a video (data.clip_interval_power)."""

import numpy as np
from ml_collections import ConfigDict

from jvssl.data import sampling


def data_config(**fields):
  base = dict(num_frames=4, frame_stride=2, clips_per_video=2, sampling="random", max_clip_distance=0)
  return ConfigDict(base | fields)


def gaps(power: float, max_distance: int = 0, length: int = 47, draws: int = 4000) -> np.ndarray:
  rng = np.random.default_rng(0)
  config = data_config(max_clip_distance=max_distance, clip_interval_power=power)
  out = np.stack([sampling.clip_indices(length, config, rng) for _ in range(draws)])  # [draws, 2, 4]
  assert (out >= 0).all() and (out < length).all()
  np.testing.assert_array_equal(np.diff(out, axis=-1), 2)  # Whole clips, not clamped at the end.
  return out[:, 1, 0] - out[:, 0, 0]


def test_interval_weights_fall_as_a_power_of_the_gap():
  w = sampling.interval_weights(9, 1.0)
  np.testing.assert_allclose(w.sum(), 1.0)
  np.testing.assert_allclose(w, (10 - np.arange(10)) / 55)  # CVRL's -t + c.
  assert (np.diff(sampling.interval_weights(9, 0.5)) < 0).all()
  # A lower power puts more of the mass on near clips.
  assert sampling.interval_weights(9, 0.5)[:3].sum() > w[:3].sum() > sampling.interval_weights(9, 2.0)[:3].sum()


def test_power_law_gaps_follow_the_weights_and_respect_max_distance():
  g = gaps(1.0)  # Windows of 7 frames in 47: gaps 0..40, the second clip after the first.
  assert g.min() >= 0 and g.max() <= 40
  counts = np.bincount(g, minlength=41) / len(g)
  expected = sampling.interval_weights(40, 1.0)
  # Coarse bins of the histogram against the distribution, within sampling error.
  np.testing.assert_allclose(counts[:40].reshape(4, 10).sum(1), expected[:40].reshape(4, 10).sum(1), atol=0.03)
  near = gaps(1.0, max_distance=5)
  assert near.min() >= 0 and near.max() <= 5


def test_default_draws_starts_independently_as_before():
  # clip_interval_power absent (a config from before the field) or 0: the original draws.
  rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
  a = sampling.clip_indices(47, data_config(), rng_a)
  b = sampling.clip_indices(47, data_config(clip_interval_power=0.0), rng_b)
  np.testing.assert_array_equal(a, b)
  starts = sampling.window_starts(47, 2, 4, 2, 0, np.random.default_rng(3))
  np.testing.assert_array_equal(a[:, 0], starts)
  assert (gaps(0.0) < 0).any()  # Either clip may come first.
