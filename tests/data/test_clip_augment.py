"""VideoMAE's fine-tuning augmentations: RandAugment and random erasing alike for every frame, seeded, and
PIL's arithmetic; repeated augmentation in the training order."""

import numpy as np
import pytest
import tensorflow as tf
from ml_collections import ConfigDict

from jvssl import config as config_lib
from jvssl.data import augment, clip_augment, pipeline
from jvssl.errors import ConfigError

from test_augment import still_video


def _data_config(**augment_fields):
  cfg = augment.default_config()
  cfg.update(augment_fields)
  return ConfigDict({"image_size": 16, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "augment": cfg})


def _seed(s):
  return tf.constant([s, 11], tf.int64)


def test_rand_augment_treats_every_frame_alike_and_is_a_function_of_the_seed():
  cfg = _data_config(rand_augment_ops=4)
  video = still_video(frames=3)
  outs = [augment.train_augment(video, _seed(s), cfg).numpy() for s in range(8)]
  for out in outs:
    assert out.shape == (3, 16, 16, 3) and out.dtype == np.uint8
    assert (out == out[:1]).all()  # Identical frames stay identical: one op sequence, one set of arguments.
  assert len({o.tobytes() for o in outs}) == 8
  np.testing.assert_array_equal(augment.train_augment(video, _seed(3), cfg), outs[3])
  plain = augment.train_augment(video, _seed(0), _data_config()).numpy()
  assert sum((o != plain).any() for o in outs) >= 6  # Ops apply with probability 1/2: 4 skipped = 1/16.


def test_random_erasing_puts_one_box_at_the_same_place_in_every_frame():
  cfg = _data_config(random_erase_prob=1.0)
  video = tf.fill([4, 16, 16, 3], tf.constant(255, tf.uint8))  # Noise around the mean is never 255 everywhere.
  areas = []
  for s in range(6):
    out = augment.train_augment(video, _seed(s), cfg).numpy()
    erased = (out != 255).any(-1)  # [T, H, W]
    box = erased.any(0)
    ys, xs = np.nonzero(box)
    assert box[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all()  # A rectangle...
    assert (erased.mean(axis=(1, 2)) > 0.9 * box.mean()).all()  # ...in every frame,
    assert (out[0][box] != out[1][box]).any()  # with noise drawn per frame.
    areas.append(box.mean())
  assert all(0.01 < a < 0.4 for a in areas) and len(set(areas)) > 1
  kept = augment.train_augment(video, _seed(0), _data_config(random_erase_prob=0.0)).numpy()
  assert (kept == 255).all()


# Each op at magnitude 7, sign +, against PIL as timm calls it (fill 128; timm resamples bicubic, these bilinear).
_LEVEL = 0.7
_FACTOR = 1.0 + 0.9 * _LEVEL


def _pil_ops():
  from PIL import Image, ImageEnhance, ImageOps

  affine = lambda im, m: im.transform(im.size, Image.AFFINE, m, resample=Image.BILINEAR, fillcolor=(128,) * 3)
  return {
    "auto_contrast": ImageOps.autocontrast,
    "equalize": ImageOps.equalize,
    "invert": ImageOps.invert,
    "posterize": lambda im: ImageOps.posterize(im, 4 - int(_LEVEL * 4)),
    "solarize": lambda im: ImageOps.solarize(im, 256 - int(_LEVEL * 256)),
    "solarize_add": lambda im: im.point([min(255, i + int(_LEVEL * 110)) if i < 128 else i for i in range(256)] * 3),
    "color": lambda im: ImageEnhance.Color(im).enhance(_FACTOR),
    "contrast": lambda im: ImageEnhance.Contrast(im).enhance(_FACTOR),
    "brightness": lambda im: ImageEnhance.Brightness(im).enhance(_FACTOR),
    "sharpness": lambda im: ImageEnhance.Sharpness(im).enhance(_FACTOR),
    "rotate": lambda im: im.rotate(30 * _LEVEL, resample=Image.BILINEAR, fillcolor=(128,) * 3),
    "shear_x": lambda im: affine(im, (1, 0.3 * _LEVEL, 0, 0, 1, 0)),
    "shear_y": lambda im: affine(im, (1, 0, 0, 0.3 * _LEVEL, 1, 0)),
    "translate_x": lambda im: affine(im, (1, 0, 0.45 * _LEVEL * im.size[0], 0, 1, 0)),
    "translate_y": lambda im: affine(im, (1, 0, 0, 0, 1, 0.45 * _LEVEL * im.size[1])),
  }


def test_rand_augment_ops_compute_what_pil_computes():
  pytest.importorskip("PIL")
  from PIL import Image

  pil_ops = _pil_ops()
  assert sorted(fn.__name__ for fn in clip_augment.OPS) == sorted(pil_ops)
  image = (np.random.default_rng(0).random((24, 20, 3)) ** 2 * 200 + 20).astype(np.uint8)
  x = tf.constant(image[None].astype(np.float32))
  for fn in clip_augment.OPS:
    name, pil_op = fn.__name__, pil_ops[fn.__name__]
    got = fn(x, tf.constant(_LEVEL), tf.constant(1.0)).numpy()[0]
    diff = np.abs(got - np.asarray(pil_op(Image.fromarray(image)), np.float32))
    if name in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
      # Only along the edge of the uncovered fill do the two bilinear samplers differ (tf blends in the fill).
      assert np.median(diff) == 0 and (diff > 1).mean() < 0.1, name
    else:
      assert diff.max() == 0, name


def _repeat_config(repeats):
  c = config_lib.base_config(model="vit", method="classify")
  c.data.num_frames, c.data.frame_stride, c.data.image_size, c.data.batch_size = 2, 1, 16, 4
  c.data.synthetic.num_train, c.data.synthetic.video_length = 6, 8
  c.data.augment.flip, c.data.augment.repeats = True, repeats
  return c


def test_repeats_fill_consecutive_places_with_copies_of_one_video_and_resume_exactly():
  c = _repeat_config(2)
  assert pipeline.num_train_examples(c.data) == 12  # An epoch sees every video twice.
  batches = list(pipeline.train_dataset(c).take(4).as_numpy_iterator())
  labels = np.concatenate([b["label"] for b in batches])
  np.testing.assert_array_equal(labels[0::2], labels[1::2])
  assert sorted(labels[0:12:2]) == list(range(6))  # Epoch 0: each video once (in two copies).
  video = np.concatenate([b["video"] for b in batches])
  same_frames = [(a == b).all() or (a == b[:, :, ::-1]).all() for a, b in zip(video[0::2], video[1::2])]
  assert all(same_frames)  # Copies of one clip (flips apart): cut from the same frames, augmented apart.
  assert not all((a == b).all() for a, b in zip(video[0::2], video[1::2]))
  resumed = next(pipeline.train_dataset(c, start_step=2).as_numpy_iterator())
  np.testing.assert_array_equal(resumed["video"], batches[2]["video"])
  c.data.batch_size = 3
  with pytest.raises(ConfigError, match="repeats 2 does not divide"):
    pipeline.train_dataset(c)
