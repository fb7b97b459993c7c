import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from jvssl.methods import views

VIDEO = jax.random.uniform(jax.random.key(0), (3, 4, 16, 16, 3))


@pytest.mark.parametrize(
  "make",
  [
    lambda k: views.multi_view(k, VIDEO, 2, crop_scale=(0.2, 1.0), frame_fraction=(0.25, 1.0)),
    lambda k: views.clip_views(
      k, VIDEO[:, None], 2, crop_scale=(0.2, 1.0), frame_fraction=(0.25, 1.0), color_strength=0.5
    ),
    lambda k: views.speed_views(k, VIDEO, (1, 2, 4)),
    lambda k: views.shuffle_segments(k, VIDEO, views.permutation_set(2, 2)),
    lambda k: views.jigsaw(k, VIDEO, views.permutation_set(4, 8), (1, 2, 2)),
    lambda k: views.jigsaw(k, VIDEO, views.permutation_set(4, 8), (1, 2, 2), gap=4),
    lambda k: views.rotate(k, VIDEO),
  ],
)
def test_views_are_a_function_of_the_key(make):
  a, b, c = make(jax.random.key(1)), make(jax.random.key(1)), make(jax.random.key(2))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c)))


def test_permutation_set_is_deterministic_distinct_and_starts_with_identity():
  perms = views.permutation_set(4, 10, seed=3)
  np.testing.assert_array_equal(perms, views.permutation_set(4, 10, seed=3))
  assert len({tuple(p) for p in perms}) == 10
  np.testing.assert_array_equal(perms[0], np.arange(4))
  # Far apart: the first pick differs from the identity everywhere.
  assert (perms[1] != np.arange(4)).all()


def test_labels_say_how_the_clip_was_changed():
  perms = views.permutation_set(4, 6)
  shuffled, labels = views.shuffle_segments(jax.random.key(4), VIDEO, perms)
  for i, label in enumerate(np.asarray(labels)):
    np.testing.assert_array_equal(shuffled[i], VIDEO[i][perms[label]])
  rotated, k = views.rotate(jax.random.key(5), VIDEO)
  for i in range(3):
    np.testing.assert_array_equal(rotated[i], np.rot90(VIDEO[i], int(k[i]), axes=(1, 2)))
  puzzle, labels = views.jigsaw(jax.random.key(6), VIDEO, views.permutation_set(4, 8), (1, 2, 2))
  cells = lambda v: [v[:, :8, :8], v[:, :8, 8:], v[:, 8:, :8], v[:, 8:, 8:]]
  for i, label in enumerate(np.asarray(labels)):
    perm = views.permutation_set(4, 8)[label]
    for position, source in enumerate(perm):
      np.testing.assert_array_equal(cells(puzzle[i])[position], cells(VIDEO[i])[source])
  fast, labels = views.speed_views(jax.random.key(7), VIDEO, (1, 4))
  for i, label in enumerate(np.asarray(labels)):
    distinct = len({np.asarray(f).tobytes() for f in fast[i]})
    assert distinct == 4 if label == 1 else distinct <= 2  # A quarter rate spans one frame interval.


def test_jigsaw_gap_keeps_a_jittered_crop_of_each_cell_between_zero_borders():
  perms, gap = views.permutation_set(4, 8), 4
  _, labels = views.jigsaw(jax.random.key(6), VIDEO, perms, (1, 2, 2))
  puzzle, gapped_labels = views.jigsaw(jax.random.key(6), VIDEO, perms, (1, 2, 2), gap=gap)
  np.testing.assert_array_equal(labels, gapped_labels)  # The gap changes the pixels, not the puzzle.
  cells = lambda v: [v[:, :8, :8], v[:, :8, 8:], v[:, 8:, :8], v[:, 8:, 8:]]
  offsets = set()
  for i, label in enumerate(np.asarray(labels)):
    for position, source in enumerate(perms[label]):
      cell, original = np.asarray(cells(puzzle[i])[position]), np.asarray(cells(VIDEO[i])[source])
      inner = cell[:, 2:6, 2:6]
      border = cell.copy()
      border[:, 2:6, 2:6] = 0
      assert not border.any()  # A gap of 4: two zero pixels on each side of the 4x4 crop.
      found = [(y, x) for y in range(5) for x in range(5) if np.array_equal(inner, original[:, y : y + 4, x : x + 4])]
      assert found, f"clip {i} cell {position} is no 4x4 crop of cell {source}"
      offsets.update(found)
  assert len(offsets) > 3  # Each cell draws its own offset.
  with pytest.raises(ValueError, match="does not fit 8x8 cells"):
    views.jigsaw(jax.random.key(6), VIDEO, perms, (1, 2, 2), gap=8)


def test_jigsaw_standardized_cells_keep_no_brightness_or_colour():
  perms = views.permutation_set(8, 8)
  bright = VIDEO * jnp.array([1.0, 2.0, 3.0]) + jnp.linspace(0.0, 5.0, 16)[:, None, None]  # A gradient down.
  plain, labels = views.jigsaw(jax.random.key(6), bright, perms, (2, 2, 2))
  puzzle, same_labels = views.jigsaw(jax.random.key(6), bright, perms, (2, 2, 2), standardize_cells=True)
  np.testing.assert_array_equal(labels, same_labels)
  cells = np.asarray(puzzle).reshape(3, 2, 2, 2, 8, 2, 8, 3)  # b, gt, t, gh, h, gw, w, c
  np.testing.assert_allclose(cells.mean(axis=(2, 4, 6)), 0.0, atol=1e-5)
  np.testing.assert_allclose(cells.std(axis=(2, 4, 6)), 1.0, atol=1e-4)
  raw = np.asarray(plain).reshape(cells.shape)
  assert np.ptp(raw.mean(axis=(2, 4, 6))) > 1.0  # Without it, the gradient tells the cells apart.


def test_temporally_consistent_views_crop_every_frame_alike():
  # A clip whose frames are all the same image: consistent views keep them equal, per-frame views do not.
  still = jax.numpy.broadcast_to(VIDEO[:, :1], VIDEO.shape)
  kw = dict(crop_scale=(0.2, 0.6), frame_fraction=(1.0, 1.0), color_strength=0.5)
  consistent = views.clip_views(jax.random.key(3), still, 2, **kw)
  per_frame = views.clip_views(jax.random.key(3), still, 2, temporally_consistent=False, **kw)
  assert consistent.shape == per_frame.shape == (3, 2, 4, 16, 16, 3)
  np.testing.assert_allclose(consistent, jax.numpy.broadcast_to(consistent[:, :, :1], consistent.shape), atol=1e-6)
  assert np.abs(per_frame[:, :, 1:] - per_frame[:, :, :1]).max() > 0.1
  # The default is the consistent draw, as before the field existed.
  default = views.clip_views(
    jax.random.key(3), still, 2, crop_scale=(0.2, 0.6), frame_fraction=(1.0, 1.0), color_strength=0.5
  )
  np.testing.assert_array_equal(default, consistent)


def test_view_fields_declare_every_option():
  fields = views.view_fields(view_temporally_consistent=False)
  assert set(views.options(ConfigDict(fields))) == {
    "crop_scale",
    "frame_fraction",
    "flip",
    "color_strength",
    "grayscale_prob",
    "temporally_consistent",
    "standardize",
  }
  assert views.options(ConfigDict(fields))["temporally_consistent"] is False


def test_dino_draws_global_and_local_views_as_its_config_says(monkeypatch):
  from flax import nnx

  from jvssl import config as config_lib, registry
  from jvssl.methods.base import RunLength

  seen = []

  class Drawn(Exception):
    pass

  def record(rng, video, num_views, **kw):
    seen.append(kw["temporally_consistent"])
    if len(seen) == 2:
      raise Drawn  # Both draws seen; the encoder need not run.
    return jax.numpy.zeros((video.shape[0], num_views, *views.first_clip(video).shape[1:]))

  monkeypatch.setattr(views, "clip_views", record)
  c = config_lib.load("configs/ssl_synthetic.py:dino,runlocal", ["method.view_temporally_consistent=False"])
  method = registry.METHODS.get("dino")(c, RunLength(10, 1.0))
  video = np.zeros((2, c.data.num_frames, c.data.image_size, c.data.image_size, 3), np.float32)
  with pytest.raises(Drawn):
    method.loss(method.build(nnx.Rngs(0)), {"video": video}, jax.random.key(0), jax.numpy.asarray(0))
  assert seen == [False, False]  # Global views, then local views.


def test_view_flip_false_never_mirrors_a_view():
  # Bright left half, dark right half: a view is mirrored exactly when its left edge is the darker one.
  video = np.zeros((3, 4, 16, 16, 3), np.float32)
  video[:, :, :, :8] = 1.0
  left_darker = {}
  for flip in (True, False):
    options = views.options(ConfigDict(views.view_fields(view_crop_scale=(0.8, 1.0), view_flip=flip)))
    out = np.asarray(views.clip_views(jax.random.key(5), video, 8, **options))
    left_darker[flip] = out[..., :, 0, :].mean(axis=(2, 3, 4)) < out[..., :, -1, :].mean(axis=(2, 3, 4))
  assert left_darker[True].any()  # The default mirrors some of 24 views (none with probability 2^-24).
  assert not left_darker[False].any()


def test_view_standardize_gives_every_view_zero_mean_and_unit_variance_per_channel():
  video = VIDEO[:, None] * jnp.array([2.0, 4.0, 8.0]) + 3.0  # Clips of one video, each channel with its own cast.
  options = views.options(ConfigDict(views.view_fields(view_standardize=True, view_color_strength=0.5)))
  out = np.asarray(views.clip_views(jax.random.key(0), video, 2, **options))
  np.testing.assert_allclose(out.mean(axis=(2, 3, 4)), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.std(axis=(2, 3, 4)), 1.0, atol=1e-3)
  raw = np.asarray(views.clip_views(jax.random.key(0), video, 2, **dict(options, standardize=False)))
  assert np.abs(raw.mean(axis=(2, 3, 4))).min() > 1.0  # Without it the cast is still there.
