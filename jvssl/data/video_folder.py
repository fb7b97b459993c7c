"""A folder of video files plus an annotation list, decoded with PyAV inside tf.data.

List formats (one video per line, paths relative to `video_folder.root`):
  `relative/path.mp4 label` or `relative/path.mp4` (VideoMAE / MMAction2 lists;
  no label: -1, for pretraining), or a CSV whose header is `path,label[,start,end]`
  (start/end in seconds: only that part of the video is sampled).

A file that cannot give a clip is skipped and replaced by another video of the
list chosen from the example's seed (so the order stays deterministic); every
skip is counted by reason in `jvssl.data.bad_input`. A truncated file is not
skipped: clips are sampled within the frames it holds (counted as a `truncated`
repair), which are the frames `make_tfrecords` writes for it.
"""

import csv
import dataclasses
import os
import time

import numpy as np
import tensorflow as tf
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.data import bad_input, sampling, video_decode
from jvssl.errors import ConfigError, DataError

# Raised inside tf.data; pipeline.device_iterator turns errors carrying it back into DataError.
DATA_ERROR_MARK = "jvssl-data-error:"


@dataclasses.dataclass(frozen=True)
class Entry:
  path: str
  label: int = -1
  start: float = 0.0  # Seconds.
  end: float = 0.0  # Seconds; 0: the end of the video.


def read_list(list_path: str, root: str) -> list[Entry]:
  """Parses an annotation list (see the module docstring) into entries with paths joined to root."""
  if not tf.io.gfile.exists(list_path):
    raise ConfigError(f"annotation list not found: {list_path}")
  with tf.io.gfile.GFile(list_path) as f:
    lines = [line.strip() for line in f]
  lines = [line for line in lines if line and not line.startswith("#")]
  if lines and lines[0].replace(" ", "").lower().startswith("path,"):
    rows = list(csv.DictReader(lines))
    try:
      return [
        Entry(
          os.path.join(root, r["path"]),
          int(r["label"]) if r.get("label") not in (None, "") else -1,
          float(r.get("start") or 0.0),
          float(r.get("end") or 0.0),
        )
        for r in rows
      ]
    except ValueError as e:
      raise ConfigError(f"{list_path}: cannot read a row ({e}); expected path,label[,start,end]") from None
  entries = []
  for line in lines:
    parts = line.rsplit(maxsplit=1)
    if len(parts) == 2 and _is_int(parts[1]):
      entries.append(Entry(os.path.join(root, parts[0]), int(parts[1])))
    else:
      entries.append(Entry(os.path.join(root, line)))
  return entries


def _is_int(text: str) -> bool:
  return text.lstrip("-").isdigit()


@registry.SOURCES.register("video_folder")
class VideoFolderSource:
  """`load(index, seed)` -> {"video": uint8 [T, H, W, 3] or [K, T, H, W, 3], "label": int32, "bad": int32}.

  "bad" is 1 when the listed video was skipped and another one stands in.
  """

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "root": "",  # Folder the list's paths are relative to.
        "train_list": "",  # Annotation list per split (see jvssl/data/video_folder.py).
        "test_list": "",
        "val_list": "",
        "num_classes": 0,  # 0: 1 + the largest label in the list.
        "decode_short_side": 0,  # > 0: frames are scaled down at decode so the short side is this.
        "decode_timeout_s": 30.0,  # Wall-clock limit per file; a file over it is skipped as "timeout".
        "max_retries": 8,  # Stand-in videos tried after a bad one before the example fails.
      }
    )

  def __init__(self, data_config, split: str):
    self.data = data_config
    self.cfg = data_config.video_folder
    key = f"{split}_list"
    if key not in self.cfg or not self.cfg[key]:
      raise ConfigError(f"data.video_folder.{key} is not set (the annotation list of split '{split}')")
    self.entries = read_list(self.cfg[key], self.cfg.root)
    self.num_examples = len(self.entries)
    self.num_classes = self.cfg.num_classes or max([e.label for e in self.entries] + [-1]) + 1

  def load(self, index, seed):
    """index: int64 scalar; seed: int64 [2] for this example's clip positions and stand-ins."""
    video, label, bad = tf.numpy_function(
      self.load_numpy, [index, seed], [tf.uint8, tf.int32, tf.int32], stateful=False
    )
    k = self.data.clips_per_video
    video.set_shape([k, self.data.num_frames, None, None, 3])
    label.set_shape([])
    bad.set_shape([])
    return {"video": video[0] if k == 1 else video, "label": label, "bad": bad}

  def load_numpy(self, index, seed) -> tuple[np.ndarray, np.int32, np.int32]:
    """The example as numpy: (uint8 [K, T, H, W, 3], label, bad). Raises DataError if no stand-in works."""
    standins = sampling.rng_for(np.append(seed, 7))
    index = int(index)
    for attempt in range(self.cfg.max_retries + 1):
      entry = self.entries[index]
      try:
        clips = self.decode(entry, sampling.rng_for(seed))
        return clips, np.int32(entry.label), np.int32(attempt > 0)
      except video_decode.BadVideo as e:
        bad_input.record_skip(entry.path, e.reason, e.detail)
      index = int(standins.integers(self.num_examples))
    raise DataError(
      f"{DATA_ERROR_MARK} {self.cfg.max_retries + 1} videos in a row could not be read "
      f"(last: {entry.path}); check data.video_folder.root and the list"
    )

  def decode(self, entry: Entry, rng: np.random.Generator) -> np.ndarray:
    """One entry's clips, uint8 [K, T, H, W, 3]. Raises BadVideo."""
    deadline = time.monotonic() + self.cfg.decode_timeout_s
    container, stream = video_decode.open_video(entry.path, self.cfg.decode_timeout_s)
    try:
      meta = video_decode.info(container, stream)
      # A truncated file is the frames it holds, as the converters write it: clips are sampled within them.
      count = video_decode.frame_count(container, stream, meta, deadline)
      length = video_decode.window_length(count, meta.fps, entry.start, entry.end)
      if length <= 0:
        raise video_decode.BadVideo("no_frames", "the header gives no frames")
      indices = sampling.clip_indices(length, self.data, rng)
      frames, padded = video_decode.read_frames(
        container, stream, indices.reshape(-1), meta.fps, entry.start, self.cfg.decode_short_side, deadline
      )
    finally:
      container.close()
    if count < meta.num_frames:
      bad_input.record_repair("truncated")
    if padded or length < sampling.span(self.data.num_frames, self.data.frame_stride):
      bad_input.record_repair("short")
    return frames.reshape(indices.shape + frames.shape[1:])
