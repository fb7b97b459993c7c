"""The on-device HOG (jvssl/models/hog.py) is scikit-image's `hog` with per-cell L2 normalisation, per channel.

Tolerance: max abs difference <= 1e-5 per histogram entry (entries lie in [0, 1]); JAX computes in
float32, scikit-image in float64, so a pixel whose angle lies within float32 rounding of a bin
boundary could change bin: the frames are random, where that has probability ~1e-6 per pixel.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from jvssl.models import hog

TOL = 1e-5


def test_each_channel_is_skimage_hog():
  feature = pytest.importorskip("skimage.feature")
  rng = np.random.default_rng(0)
  # Smooth structure (a ramp and a disc) plus noise, so cells have both dominant and spread orientations.
  yy, xx = np.mgrid[:48, :64]
  frame = np.stack(
    [0.01 * xx + 0.02 * yy, ((yy - 20) ** 2 + (xx - 30) ** 2 < 200).astype(float), np.zeros_like(xx, float)], -1
  )
  frame = (frame + rng.uniform(0, 0.3, frame.shape)).astype(np.float32)
  got = np.asarray(hog.hog(jnp.asarray(frame)))
  assert got.shape == (6, 8, 3, 9)
  for c in range(3):
    expected = feature.hog(
      frame[..., c],
      orientations=9,
      pixels_per_cell=(8, 8),
      cells_per_block=(1, 1),
      block_norm="L2",
      feature_vector=False,
    )[:, :, 0, 0, :]
    np.testing.assert_allclose(got[:, :, c], expected, atol=TOL, rtol=0)


def test_tubelet_targets_follow_the_token_order():
  """A token's target is the histograms of its tubelet's cells, frame by frame; normalising the input
  per channel (as the data pipeline does) leaves it unchanged."""
  rng = np.random.default_rng(1)
  video = rng.uniform(0, 1, (2, 4, 32, 48, 3)).astype(np.float32)
  targets = np.asarray(hog.tubelet_hog(jnp.asarray(video), (2, 16, 16)))
  per_frame = np.asarray(hog.hog(jnp.asarray(video)))  # [B, T, 4, 6, C, O]
  assert targets.shape == (2, 2 * 2 * 3, 2 * 2 * 2 * 3 * 9)
  # Token (t=1, h=0, w=2): frames 2-3, cell rows 0-1, cell columns 4-5.
  expected = per_frame[1, 2:4, 0:2, 4:6].reshape(-1)
  np.testing.assert_array_equal(targets[1, 1 * 6 + 0 * 3 + 2], expected)
  normalised = (video - np.array([0.4, 0.5, 0.6])) / np.array([0.2, 0.3, 0.25])
  np.testing.assert_allclose(hog.tubelet_hog(jnp.asarray(normalised, jnp.float32), (2, 16, 16)), targets, atol=1e-5)
