"""TFRecord shards of tf.train.SequenceExample with JPEG frames (the DMVR layout), decoded inside tf.data.

Layout (what `python -m jvssl.tools.make_tfrecords` writes and DMVR readers expect):
  feature list `image/encoded`: one JPEG per frame;
  context `clip/label/index`: int64 label (absent: -1, for pretraining);
  context `caption/string`, `video_id`: optional bytes (kept in the record, not read here).

The pipeline asks for example `index` at any position, so the source keeps an
index of (shard, byte offset) per record, read once from each shard's record
headers (or from the `.index` file next to a shard, which the converter writes;
`python -m jvssl.data.tfrecord 'gs://bucket/train-*'` writes them for shards made
elsewhere, so start-up on remote storage does not walk every record header).
`load` reads only that record's bytes and, in Python, picks the clip's frames
from the parsed proto with `sampling.clip_indices` and the example's seed exactly
as for video folders (so the same seed gives the same clips from a folder or
from its TFRecords); only the picked JPEGs enter TensorFlow, where
tf.io.decode_jpeg (via decode_image) runs in parallel under tf.data. A record
that cannot be parsed or holds a damaged frame is skipped, counted and stood in
for by another record chosen from the seed, as video_folder does for files.
"""

import struct

import numpy as np
import tensorflow as tf
from google.protobuf import message
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.data import bad_input, sampling
from jvssl.data.video_folder import DATA_ERROR_MARK
from jvssl.errors import ConfigError, DataError

FRAMES_KEY = "image/encoded"
LABEL_KEY = "clip/label/index"
# Beside each shard: one "offset length" line per record ("#" lines are notes, e.g. skipped videos).
INDEX_SUFFIX = ".index"
_HEADER = 12  # uint64 length + uint32 masked CRC of the length.
_FOOTER = 4  # uint32 masked CRC of the data.


def shard_files(patterns: str) -> list[str]:
  """Sorted files matching comma-separated glob patterns (shards' own `.index` files excluded)."""
  files = []
  for pattern in patterns.split(","):
    if pattern.strip():
      files.extend(
        f for f in tf.io.gfile.glob(pattern.strip()) if not f.endswith((INDEX_SUFFIX, ".tsv")) and ".tmp" not in f
      )
  return sorted(set(files))


def record_offsets(path: str) -> np.ndarray:
  """int64 [N, 2]: (byte offset of the data, data length) of each record of a TFRecord shard.

  Uses the shard's `.index` file when present, else walks the record headers (no
  data is read). A shard cut short is indexed up to its last whole record and
  the loss is counted as a "truncated_shard" skip.
  """
  if tf.io.gfile.exists(path + INDEX_SUFFIX):
    with tf.io.gfile.GFile(path + INDEX_SUFFIX) as f:
      rows = [[int(v) for v in line.split()] for line in f if line.strip() and not line.startswith("#")]
    return np.array(rows, np.int64).reshape(-1, 2)
  size = tf.io.gfile.stat(path).length
  rows, position = [], 0
  with tf.io.gfile.GFile(path, "rb") as f:
    while position < size:
      f.seek(position)
      header = f.read(_HEADER)
      if len(header) < _HEADER:
        break
      (length,) = struct.unpack("<Q", header[:8])
      end = position + _HEADER + length + _FOOTER
      if end > size:
        break
      rows.append((position + _HEADER, length))
      position = end
  if position < size:
    bad_input.record_skip(path, "truncated_shard", f"{size - position} bytes after record {len(rows)} unreadable")
  return np.array(rows, np.int64).reshape(-1, 2)


def offsets_from_lengths(lengths) -> np.ndarray:
  """int64 [N, 2] (data offset, length) of records of these data lengths written one after another."""
  lengths = np.asarray(lengths, np.int64).reshape(-1)
  ends = np.cumsum(_HEADER + lengths + _FOOTER)
  return np.stack([ends - lengths - _FOOTER, lengths], axis=1)


def write_index(path: str, offsets: np.ndarray, notes=()) -> None:
  """Writes shard `path`'s `.index` file (offsets from record_offsets; notes become "#" lines), atomically."""
  tmp = path + INDEX_SUFFIX + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write("".join([f"{offset} {length}\n" for offset, length in offsets] + [f"# {note}\n" for note in notes]))
  tf.io.gfile.rename(tmp, path + INDEX_SUFFIX, overwrite=True)


def read_record(path: str, offset: int, length: int) -> bytes:
  # Local files through Python's own I/O: tf.io.gfile is many times slower for megabyte reads.
  with open(path, "rb") if "://" not in path else tf.io.gfile.GFile(path, "rb") as f:
    f.seek(offset)
    return f.read(length)


class RecordIndex:
  """Where each record of a list of TFRecord shards is: `read(i)` reads record i's bytes and nothing else."""

  def __init__(self, files: list[str]):
    self.files = files
    per_shard = [record_offsets(f) for f in files]
    self.shard = np.concatenate([np.full(len(o), i, np.int64) for i, o in enumerate(per_shard)])
    self.offsets = np.concatenate(per_shard)
    self.shard_lengths = [len(o) for o in per_shard]

  def __len__(self) -> int:
    return len(self.offsets)

  def read(self, index) -> bytes:
    index = int(index)
    offset, length = self.offsets[index]
    return read_record(self.files[self.shard[index]], int(offset), int(length))

  def describe(self, index) -> str:
    """Record `index` as `shard#k` (its position in its shard), for the list of bad input."""
    index = int(index)
    shard = int(self.shard[index])
    return f"{self.files[shard]}#{index - sum(self.shard_lengths[:shard])}"


def sequence_example_frames(record: bytes) -> tuple[list, int]:
  """A DMVR SequenceExample -> (its frames' encoded images, label or -1)."""
  example = tf.train.SequenceExample.FromString(record)
  labels = example.context.feature[LABEL_KEY].int64_list.value if LABEL_KEY in example.context.feature else []
  frames = example.feature_lists.feature_list[FRAMES_KEY].feature
  return [f.bytes_list.value[0] if f.bytes_list.value else b"" for f in frames], (labels[0] if labels else -1)


def load_clips(records: RecordIndex, parse, index, seed, data_config, max_retries: int, positions=None):
  """Record `index`'s clips, inside tf.data: (uint8 [T, H, W, 3] or [K, T, H, W, 3], label int32, bad int32).

  `parse(record bytes) -> (encoded frames, label)` runs in Python with the frame
  choice (from `seed`, as video_folder chooses), so only the chosen frames' bytes
  enter TensorFlow; TensorFlow ops decode them (JPEG or PNG), in parallel under
  tf.data. `positions` (int array) maps example indices to record numbers when
  the examples are a subset of the records. bad is 1 when another record stood in.
  """
  k, t = data_config.clips_per_video, data_config.num_frames
  num_examples = len(positions) if positions is not None else len(records)

  def pick(index, seed):
    standins = sampling.rng_for(np.append(seed, 7))
    index = int(index)
    for attempt in range(max_retries + 1):
      record = int(positions[index]) if positions is not None else index
      try:
        frames, label = parse(records.read(record))
        reason = "no_frames" if not frames else ""
      except message.DecodeError:
        reason = "unparsable"
      if not reason:
        chosen = [frames[i] for i in frame_indices(len(frames), seed, data_config).reshape(-1)]
        if all(map(looks_whole, chosen)):
          return np.array(chosen, object), np.int32(label), np.int32(attempt > 0)
        reason = "damaged_frame"
      bad_input.record_skip(records.describe(record), reason)
      index = int(standins.integers(num_examples))
    raise DataError(
      f"{DATA_ERROR_MARK} {max_retries + 1} records in a row could not be read "
      f"(last: {records.describe(record)}); rebuild the shards with python -m jvssl.tools.make_tfrecords"
    )

  encoded, label, bad = tf.numpy_function(pick, [index, seed], [tf.string, tf.int32, tf.int32], stateful=False)
  encoded = tf.reshape(encoded, [k * t])
  label.set_shape([])
  bad.set_shape([])
  frames = tf.stack([tf.io.decode_image(encoded[i], channels=3, expand_animations=False) for i in range(k * t)])
  video = tf.reshape(frames, tf.concat([[k, t], tf.shape(frames)[1:]], 0))
  video.set_shape([k, t, None, None, 3])
  return (video[0] if k == 1 else video), label, bad


def looks_whole(image: bytes) -> bool:
  """Whether encoded bytes are a whole JPEG (start marker, end marker near the end) or a PNG.

  A cut-off JPEG would stop tf.data with a decode error, so such frames are caught here.
  """
  return (image[:2] == b"\xff\xd8" and b"\xff\xd9" in image[-16:]) or image[:8] == b"\x89PNG\r\n\x1a\n"


def frame_indices(length: int, seed, data_config) -> np.ndarray:
  """int64 [K, T] frame indices for a stored video of `length` > 0 frames, picked as video_folder picks them."""
  if length < sampling.span(data_config.num_frames, data_config.frame_stride):
    bad_input.record_repair("short")
  return sampling.clip_indices(length, data_config, sampling.rng_for(seed))


@registry.SOURCES.register("tfrecord")
class TFRecordSource:
  """`load(index, seed)` -> {"video": uint8 [T, H, W, 3] or [K, T, H, W, 3], "label": int32, "bad": int32}."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        # Comma-separated glob patterns of the shards of each split, e.g. "/data/k400/train-*-of-*".
        "train_files": "",
        "test_files": "",
        "val_files": "",
        "num_classes": 0,  # 0: unknown (labels are read per record); set it for supervised evaluation.
        "max_retries": 8,  # Stand-in records tried after a bad one before the example fails.
      }
    )

  def __init__(self, data_config, split: str):
    self.data = data_config
    self.cfg = data_config.tfrecord
    key = f"{split}_files"
    if key not in self.cfg or not self.cfg[key]:
      raise ConfigError(f"data.tfrecord.{key} is not set (the shards of split '{split}')")
    files = shard_files(self.cfg[key])
    if not files:
      raise ConfigError(f"no files match data.tfrecord.{key}={self.cfg[key]!r}")
    self.records = RecordIndex(files)
    self.num_examples = len(self.records)
    self.num_classes = self.cfg.num_classes

  def load(self, index, seed):
    """index: int64 scalar; seed: int64 [2], the per-example seed that picks the clip's frames."""
    video, label, bad = load_clips(self.records, sequence_example_frames, index, seed, self.data, self.cfg.max_retries)
    return {"video": video, "label": label, "bad": bad}


def main(argv=None) -> int:
  """Writes the missing `.index` files of the shards matching the patterns given as arguments."""
  import sys

  patterns = sys.argv[1:] if argv is None else argv
  if not patterns:
    print("usage: python -m jvssl.data.tfrecord 'SHARD_PATTERN' [...]", file=sys.stderr)
    return 2
  for path in shard_files(",".join(patterns)):
    if not tf.io.gfile.exists(path + INDEX_SUFFIX):
      write_index(path, record_offsets(path))
      print(f"indexed {path}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
