"""TFDS: a registered video data set read by name, and jvssl's own builder from a video folder."""

import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jvssl import config as config_lib
from jvssl.data import pipeline, tfds_builder
from jvssl.errors import ConfigError

sys.path.insert(0, os.path.dirname(__file__))
from test_tfrecord import LENGTHS, batches, run_config  # noqa: E402
from test_video_folder import RUNLOCAL, frame_numbers  # noqa: E402
from videos import frame_value, write_video  # noqa: E402


class JvsslTestVideos(tfds.core.GeneratorBasedBuilder):
  """Six grey-ramp videos (frame i has grey level frame_value(i)) of 10 + 2 * k frames, label k % 3."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "clip": tfds.features.Video(shape=(None, 24, 24, 3), encoding_format="png"),
          "action": tfds.features.ClassLabel(num_classes=3),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(6), "test": self._generate_examples(2)}

  def _generate_examples(self, n):
    for k in range(n):
      frames = np.stack([np.full((24, 24, 3), frame_value(i), np.uint8) for i in range(10 + 2 * k)])
      yield k, {"clip": frames, "action": k % 3}


def tfds_config(data_dir, name, *overrides):
  return config_lib.load(
    RUNLOCAL,
    [
      "data.source=tfds",
      f"data.tfds.name={name}",
      f"data.tfds.data_dir={data_dir}",
      "data.batch_size=6",
      "data.num_frames=4",
      "data.frame_stride=2",
      "data.num_parallel_calls=2",
      *overrides,
    ],
  )


def test_registered_data_set_by_name(tmp_path):
  JvsslTestVideos(data_dir=str(tmp_path)).download_and_prepare()
  c = tfds_config(tmp_path, "jvssl_test_videos", "data.tfds.video_key=clip", "data.tfds.label_key=action")
  assert pipeline.make_source(c.data, "train").num_classes == 3
  batch = batches(c, 1)[0]
  assert batch["video"].shape == (6, 4, 32, 32, 3)
  assert sorted(batch["label"].tolist()) == [0, 0, 1, 1, 2, 2]  # One epoch, shuffled: every example once.
  frames = frame_numbers(batch["video"])
  assert (np.diff(frames, axis=-1) == 2).all() and len(set(frames[:, 0].tolist())) > 1
  keys = ("data.tfds.video_key=clip", "data.tfds.label_key=action", "data.shuffle=False")
  in_order = batches(tfds_config(tmp_path, "jvssl_test_videos", *keys), 1)[0]["label"]
  sliced = tfds_config(tmp_path, "jvssl_test_videos", *keys, "data.tfds.splits.train=train[2:5]", "data.batch_size=3")
  assert pipeline.make_source(sliced.data, "train").num_examples == 3
  np.testing.assert_array_equal(batches(sliced, 1)[0]["label"], in_order[2:5])
  with pytest.raises(ConfigError, match="no feature 'video'"):
    pipeline.make_source(tfds_config(tmp_path, "jvssl_test_videos").data, "train")
  with pytest.raises(ConfigError, match="not found"):
    pipeline.make_source(tfds_config(tmp_path, "no_such_videos").data, "train")


def test_own_builder_gives_the_same_clips_as_the_folder(tmp_path):
  for name, n in LENGTHS.items():
    write_video(tmp_path / name, num_frames=n)
  (tmp_path / "empty.mp4").write_bytes(b"")
  lines = [f"{name} {i}" for i, name in enumerate(LENGTHS)]
  (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
  (tmp_path / "test.txt").write_text("empty.mp4 1\n" + lines[0] + "\n")
  data_dir = tmp_path / "tfds"
  assert (
    tfds_builder.main(
      [
        f"--videos={tmp_path}",
        f"--list=train={tmp_path / 'train.txt'}",
        f"--list=test={tmp_path / 'test.txt'}",
        f"--data_dir={data_dir}",
        "--name=mini",
      ]
    )
    == 0
  )
  overrides = ("data.tfds.name=jvssl_video_folder/mini", f"data.tfds.data_dir={data_dir}")
  from_folder = batches(run_config(tmp_path, "", "video_folder"), 2)
  from_tfds = batches(run_config(tmp_path, "", "tfds", *overrides), 2)
  for f, t in zip(from_folder, from_tfds):
    np.testing.assert_array_equal(f["label"], t["label"])
    np.testing.assert_array_equal(frame_numbers(f["video"]), frame_numbers(t["video"]))
    assert np.abs(f["video"].astype(int) - t["video"].astype(int)).max() <= 3  # JPEG error only.
  test = pipeline.make_source(run_config(tmp_path, "", "tfds", *overrides).data, "test")
  assert test.num_examples == 1  # The empty file was left out.
