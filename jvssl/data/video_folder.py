"""A folder of video files plus an annotation list, decoded with PyAV inside tf.data.

List formats (one video per line, paths relative to `video_folder.root`):
  `relative/path.mp4 label` or `relative/path.mp4` (VideoMAE / MMAction2 lists;
  no label: -1, for pretraining), or a CSV whose header is `path[,label][,start,end][,caption]`
  (start/end in seconds: only that part of the video is sampled). With a `caption`
  column a video may take several rows, one per caption, as MSR-VTT's 20 sentences
  per video are usually listed (WebVid's one caption is one row): rows with the
  same path, start and end are one video whose captions are theirs in list order
  (an empty cell adds none; a caption with commas is quoted, as CSV writers do).
  The source then gives "caption" (tf.string [N]); a list without captions gives no
  "caption", so a method that needs text fails at start-up rather than reading none.

With data.audio.enabled each clip also gets the file's soundtrack: data.audio.seconds
centred on the clip's middle frame time, as "audio" (float32 [samples] or [K, samples])
and "has_audio". A file without an audio track, or whose audio cannot be read, gives
zeros and has_audio 0, counted as a "no_audio" or "audio_<reason>" repair: its frames
are still used.

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
from jvssl.data import audio, bad_input, sampling, video_decode
from jvssl.errors import ConfigError, DataError

# Raised inside tf.data; pipeline.device_iterator turns errors carrying it back into DataError.
DATA_ERROR_MARK = "jvssl-data-error:"


@dataclasses.dataclass(frozen=True)
class Entry:
  path: str
  label: int = -1
  start: float = 0.0  # Seconds.
  end: float = 0.0  # Seconds; 0: the end of the video.
  captions: tuple[str, ...] = ()


def read_list(list_path: str, root: str) -> list[Entry]:
  """Parses an annotation list (see the module docstring) into entries with paths joined to root."""
  if not tf.io.gfile.exists(list_path):
    raise ConfigError(f"annotation list not found: {list_path}")
  with tf.io.gfile.GFile(list_path) as f:
    lines = [line.strip() for line in f]
  lines = [line for line in lines if line and not line.startswith("#")]
  if lines and lines[0].replace(" ", "").lower().startswith("path,"):
    return _read_csv(lines, list_path, root)
  entries = []
  for line in lines:
    parts = line.rsplit(maxsplit=1)
    if len(parts) == 2 and _is_int(parts[1]):
      entries.append(Entry(os.path.join(root, parts[0]), int(parts[1])))
    else:
      entries.append(Entry(os.path.join(root, line)))
  return entries


def _read_csv(lines: list[str], list_path: str, root: str) -> list[Entry]:
  """The CSV form; with a caption column, rows of one video (path, start, end) become one entry."""
  entries: dict = {}  # (path, start, end), or the row number without captions -> Entry.
  for n, row in enumerate(csv.DictReader(lines)):
    try:
      entry = Entry(
        os.path.join(root, row["path"]),
        int(row["label"]) if row.get("label") not in (None, "") else -1,
        float(row.get("start") or 0.0),
        float(row.get("end") or 0.0),
      )
    except ValueError as e:
      raise ConfigError(f"{list_path}: cannot read a row ({e}); expected path[,label][,start,end][,caption]") from None
    if "caption" not in row:
      entries[n] = entry
      continue
    first = entries.setdefault((entry.path, entry.start, entry.end), entry)
    if first.label != entry.label:
      raise ConfigError(f"{list_path}: rows of {row['path']} give labels {first.label} and {entry.label}; give one")
    caption = (row["caption"] or "").strip()
    if caption:
      entries[(entry.path, entry.start, entry.end)] = dataclasses.replace(first, captions=first.captions + (caption,))
  return list(entries.values())


def _is_int(text: str) -> bool:
  return text.lstrip("-").isdigit()


@registry.SOURCES.register("video_folder")
class VideoFolderSource:
  """`load(index, seed)` -> {"video": uint8 [T, H, W, 3] or [K, T, H, W, 3], "label": int32, "bad": int32}, plus
  "caption" (tf.string [N]) when the list has captions and "audio" (float32 [samples] or [K, samples]) with
  "has_audio" (int32) when data.audio.enabled (see the module docstring).

  "bad" is 1 when the listed video was skipped and another one stands in (with its captions and audio).
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
    self.has_captions = any(e.captions for e in self.entries)

  def fields(self) -> dict[str, tuple[tf.DType, list]]:
    """What `load_numpy` gives: name -> (dtype, shape with K clips)."""
    k = self.data.clips_per_video
    fields = {
      "video": (tf.uint8, [k, self.data.num_frames, None, None, 3]),
      "label": (tf.int32, []),
      "bad": (tf.int32, []),
    }
    if self.has_captions:
      fields["caption"] = (tf.string, [None])
    if self.data.audio.enabled:
      fields["audio"] = (tf.float32, [k, audio.num_samples(self.data.audio)])
      fields["has_audio"] = (tf.int32, [])
    return fields

  def load(self, index, seed):
    """index: int64 scalar; seed: int64 [2] for this example's clip positions and stand-ins."""
    fields = self.fields()

    def numpy_values(index, seed):
      example = self.load_numpy(index, seed)
      return [example[name] for name in fields]

    values = tf.numpy_function(numpy_values, [index, seed], [dtype for dtype, _ in fields.values()], stateful=False)
    example = {}
    for (name, (_, shape)), value in zip(fields.items(), values):
      value.set_shape(shape)
      example[name] = value[0] if name in ("video", "audio") and self.data.clips_per_video == 1 else value
    return example

  def load_numpy(self, index, seed) -> dict[str, np.ndarray]:
    """The example as numpy, the names of `fields()`: video uint8 [K, T, H, W, 3], label, bad, and caption (bytes
    [N]) and audio (float32 [K, samples]), has_audio where given. Raises DataError if no stand-in works."""
    standins = sampling.rng_for(np.append(seed, 7))
    index = int(index)
    for attempt in range(self.cfg.max_retries + 1):
      entry = self.entries[index]
      deadline = time.monotonic() + self.cfg.decode_timeout_s
      try:
        clips, centres = self.decode(entry, sampling.rng_for(seed), deadline)
      except video_decode.BadVideo as e:
        bad_input.record_skip(entry.path, e.reason, e.detail)
        index = int(standins.integers(self.num_examples))
        continue
      example = {"video": clips, "label": np.int32(entry.label), "bad": np.int32(attempt > 0)}
      if self.has_captions:
        example["caption"] = np.array([c.encode() for c in entry.captions], object)
      if self.data.audio.enabled:
        example["audio"], example["has_audio"] = self.sound(entry, centres, deadline)
      return example
    raise DataError(
      f"{DATA_ERROR_MARK} {self.cfg.max_retries + 1} videos in a row could not be read "
      f"(last: {entry.path}); check data.video_folder.root and the list"
    )

  def decode(self, entry: Entry, rng: np.random.Generator, deadline: float) -> tuple[np.ndarray, np.ndarray]:
    """One entry's clips, uint8 [K, T, H, W, 3], and the time of each clip's middle in the file, float [K]
    seconds from its first frame. Raises BadVideo."""
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
    # The middle of the first and last frames' times: the middle of what the clip shows, even or odd T.
    centres = entry.start + audio.clip_centres(indices, meta.fps)
    return frames.reshape(indices.shape + frames.shape[1:]), centres

  def sound(self, entry: Entry, centres: np.ndarray, deadline: float) -> tuple[np.ndarray, np.int32]:
    """data.audio.seconds of the file's audio centred on each clip: (float32 [K, samples], has_audio).

    A file without an audio track, or whose audio cannot be read (BadAudio), gives zeros and has_audio 0, counted
    as a repair: its frames decoded, so it is used.
    """
    config = self.data.audio
    silence = np.zeros([len(centres), audio.num_samples(config)], np.float32)
    waves = []
    try:
      for centre in centres:
        left = deadline - time.monotonic()
        if left <= 0:
          raise audio.BadAudio(entry.path, "timeout")
        wave, has_audio = audio.decode_audio(
          entry.path, centre - config.seconds / 2, config.seconds, config.sample_rate, timeout_s=left
        )
        if not has_audio:
          bad_input.record_repair("no_audio")
          return silence, np.int32(0)
        waves.append(wave)
    except audio.BadAudio as e:
      bad_input.record_repair(f"audio_{e.reason}")
      return silence, np.int32(0)
    return np.stack(waves), np.int32(1)
