"""data.normalize: by the data set's statistics, or per clip (each clip's own colour cast and contrast taken away)."""

import numpy as np
import pytest
from ml_collections import ConfigDict

from jvssl import config as config_lib
from jvssl.data.device import normalize_video
from jvssl.errors import ConfigError

DATA = ConfigDict({"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})


def clips(seed=0, shape=(2, 3, 4, 8, 8, 3)):
  return np.random.default_rng(seed).integers(40, 200, shape).astype(np.uint8)


def test_per_clip_standardises_each_clip_and_channel_alone():
  out = np.asarray(normalize_video(clips(), dict(DATA, normalize="per_clip")))
  np.testing.assert_allclose(out.mean(axis=(2, 3, 4)), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.std(axis=(2, 3, 4)), 1.0, atol=1e-4)


def test_per_clip_takes_away_a_clips_colour_cast_which_dataset_keeps():
  video = clips().astype(np.float32)
  # A different gain and offset per channel for every clip, as version 2 of the synthetic set draws colours per clip.
  rng = np.random.default_rng(1)
  gain, offset = rng.uniform(0.5, 1.1, (2, 3, 1, 1, 1, 3)), rng.uniform(-20, 20, (2, 3, 1, 1, 1, 3))
  recoloured = np.round(video * gain + offset).astype(np.uint8)  # Stays within 0..240: no wrap-around.
  per_clip = dict(DATA, normalize="per_clip")
  np.testing.assert_allclose(normalize_video(recoloured, per_clip), normalize_video(video, per_clip), atol=0.05)
  assert np.abs(np.asarray(normalize_video(recoloured, DATA)) - np.asarray(normalize_video(video, DATA))).mean() > 0.1


def test_a_plain_clip_is_not_blown_up_into_noise():
  video = np.full((1, 4, 8, 8, 3), 120, np.uint8)
  video[0, 0, 0, 0, 0] = 121  # One step of one pixel.
  assert np.abs(np.asarray(normalize_video(video, dict(DATA, normalize="per_clip")))).max() < 1.0


def test_an_unknown_normalisation_is_a_config_error():
  with pytest.raises(ConfigError, match="data.normalize must be one of"):
    config_lib.load("configs/videomae_synthetic.py:runlocal", ["data.normalize=per_video"])
