"""Any prepared TFDS video data set (e.g. `ucf101`, or one made by jvssl/data/tfds_builder.py), read by name.

The data set must already be prepared in `data.tfds.data_dir` (`tfds build NAME
--data_dir=...`, with manual downloads where its builder asks for them); jvssl
never downloads. Records are read by position from the data set's TFRecord
files, like the "tfrecord" source, and only the sampled frames are decoded.
"""

import os

import numpy as np
import tensorflow as tf
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.data import tfrecord
from jvssl.errors import ConfigError


def load_builder(name: str, data_dir: str):
  """The prepared builder `name` ("ucf101", "ucf101/ucf101_1@2.0.0", ...) in data_dir; ConfigError if absent.

  Data sets whose code is not registered here (e.g. jvssl_video_folder/NAME) are read from their files.
  """
  # Imported here: tensorflow_datasets takes seconds to import, and only runs that read TFDS need it.
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core import read_only_builder

  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except Exception:  # TFDS raises several types for unknown names, configs and versions.
    try:
      builder = read_only_builder.builder_from_files(name, data_dir=data_dir or None)
    except Exception as e:
      raise ConfigError(
        f"TFDS data set '{name}' not found in {data_dir or 'the default data dir'}: {str(e).splitlines()[0]}"
      ) from None
  if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
    raise ConfigError(
      f"TFDS data set '{name}' is not prepared in {builder.data_dir}; "
      f"run `tfds build {name} --data_dir={data_dir or '~/tensorflow_datasets'}` first"
    )
  if builder.info.file_format.value != "tfrecord":
    raise ConfigError(
      f"TFDS data set '{name}' is stored as {builder.info.file_format.value}; "
      "jvssl reads the tfrecord format (build it with --file_format=tfrecord)"
    )
  return builder


@registry.SOURCES.register("tfds")
class TFDSSource:
  """`load(index, seed)` -> {"video": uint8 [T, H, W, 3] or [K, T, H, W, 3], "label": int32, "bad": int32}."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "name": "",  # Registered TFDS name, optionally with config and version: "ucf101/ucf101_1@2.0.0".
        "data_dir": "",  # Where it is prepared ("": TFDS's default).
        # TFDS split for each jvssl split (data.train_split, data.eval_split, ...); TFDS slicing works ("train[:10%]").
        "splits": {"train": "train", "test": "test", "val": "validation"},
        "video_key": "video",  # A tfds.features.Video feature (encoded frames).
        "label_key": "label",  # An integer feature; "" for none (labels are -1).
        "num_classes": 0,  # 0: from the label feature when it is a ClassLabel.
        "max_retries": 8,  # Stand-in records tried after a bad one before the example fails.
      }
    )

  def __init__(self, data_config, split: str):
    self.data = data_config
    self.cfg = data_config.tfds
    if not self.cfg.name:
      raise ConfigError("data.tfds.name is not set (a prepared TFDS data set, e.g. ucf101)")
    if split not in self.cfg.splits:
      raise ConfigError(f"data.tfds.splits has no entry for split '{split}'; known: {sorted(self.cfg.splits)}")
    builder = load_builder(self.cfg.name, self.cfg.data_dir)
    features = builder.info.features
    for key in (self.cfg.video_key, self.cfg.label_key):
      if key and key not in features:
        raise ConfigError(f"TFDS data set '{self.cfg.name}' has no feature '{key}'; it has {sorted(features)}")
    try:
      instructions = builder.info.splits[self.cfg.splits[split]].file_instructions
    except (KeyError, ValueError) as e:
      raise ConfigError(f"TFDS data set '{self.cfg.name}' has no split {self.cfg.splits[split]!r}: {e}") from None
    self.records = tfrecord.RecordIndex([i.filename for i in instructions])
    # Split slicing ("train[:10%]") takes a range of records of each file.
    first = np.cumsum([0] + self.records.shard_lengths[:-1])
    self.positions = np.concatenate(
      [np.arange(first[n] + i.skip, first[n] + i.skip + i.take) for n, i in enumerate(instructions)]
      + [np.zeros([0], np.int64)]
    )
    self.num_examples = len(self.positions)
    label = features[self.cfg.label_key] if self.cfg.label_key else None
    self.num_classes = self.cfg.num_classes or getattr(label, "num_classes", 0)

  def parse(self, record: bytes) -> tuple[list, int]:
    """A TFDS tf.train.Example -> (its video's encoded frames, label or -1)."""
    features = tf.train.Example.FromString(record).features.feature
    label = features[self.cfg.label_key].int64_list.value if self.cfg.label_key in features else []
    return features[self.cfg.video_key].bytes_list.value, (label[0] if label else -1)

  def load(self, index, seed):
    """index: int64 scalar; seed: int64 [2], the per-example seed that picks the clip's frames."""
    video, label, bad = tfrecord.load_clips(
      self.records, self.parse, index, seed, self.data, self.cfg.max_retries, self.positions
    )
    return {"video": video, "label": label, "bad": bad}
