"""Video object segmentation: DAVIS's J and F on hand-made masks, and label propagation that follows the object
when the patch features say where it is, and not when they are noise."""

import numpy as np
import pytest
from ml_collections import ConfigDict

from jvssl.data import synthetic_tasks
from jvssl.evaluate import metrics, object_segmentation


def _square(top, left, side=6, size=20):
  mask = np.zeros((size, size), bool)
  mask[top : top + side, left : left + side] = True
  return mask


def test_region_and_contour_measures():
  a = _square(5, 5)
  assert metrics.jaccard(a, a) == 1.0 and metrics.boundary_f(a, a, 1) == 1.0
  assert metrics.jaccard(a, _square(12, 12)) == 0.0 and metrics.boundary_f(a, _square(12, 12), 1) == 0.0
  empty = np.zeros_like(a)
  assert metrics.jaccard(empty, empty) == 1.0 and metrics.boundary_f(empty, empty) == 1.0
  assert metrics.jaccard(a, empty) == 0.0 and metrics.boundary_f(a, empty) == 0.0
  # One pixel to the right: IoU 30/42, and every boundary pixel within 1 pixel of the other boundary.
  shifted = _square(5, 6)
  assert metrics.jaccard(a, shifted) == pytest.approx(30 / 42)
  assert metrics.boundary_f(a, shifted, 1) == 1.0
  assert metrics.boundary_f(a, _square(5, 9), 1) < 0.6
  # DAVIS's default tolerance: ceil(0.008 x diagonal) = 1 pixel at 20x20.
  assert metrics.boundary_f(a, shifted) == metrics.boundary_f(a, shifted, 1)


def _oracle_features(masks, grid, frames_per_step, rng, noise=0.05):
  """Per step and patch: how much of the patch the object covers, and how much it does not, plus noise."""
  t, h, w = grid
  size = masks.shape[1]
  steps = masks[frames_per_step // 2 :: frames_per_step].astype(float)
  fraction = steps.reshape(len(steps), h, size // h, w, size // w).mean(axis=(2, 4)).reshape(len(steps), h * w)
  x = np.stack([fraction, 1.0 - fraction], axis=-1)
  return x + noise * rng.standard_normal(x.shape)


CFG = ConfigDict({"context": 4, "topk": 5, "temperature": 0.07})


def test_propagation_follows_the_object_when_the_features_know_where_it_is():
  rng = np.random.default_rng(0)
  gen = synthetic_tasks.SegmentationVideos(length=16, size=32, radius=(0.25, 0.32), seed=3)
  grid, frames_per_step = (8, 8, 8), 2
  masks = gen.masks(0, "test")
  good = _oracle_features(masks, grid, frames_per_step, rng)
  js, fs = object_segmentation.video_scores(good, masks, grid, frames_per_step, CFG)
  assert len(js) == len(fs) == 7 and np.mean(js) > 0.7 and np.mean(fs) > 0.7, (js, fs)
  noise = rng.standard_normal(good.shape)
  js, fs = object_segmentation.video_scores(noise, masks, grid, frames_per_step, CFG)
  assert np.mean(js) < 0.5, js


def test_masks_are_where_the_shape_is_drawn():
  gen = synthetic_tasks.SegmentationVideos(length=8, size=32, pixel_noise=0.0, seed=3)
  video, _ = gen.video(1, "test")
  masks = gen.masks(1, "test")
  assert masks.shape == (8, 32, 32) and 0 < masks.mean() < 0.5
  # The background is one colour: every pixel off the shape (and off its soft edge) has it.
  background = video[~masks]
  assert (np.abs(background.astype(int) - np.median(background, axis=0)).max(axis=1) <= 2).mean() > 0.9
