"""TFRecord shards of tf.train.SequenceExample with JPEG frames (the DMVR layout), decoded inside tf.data.

Layout (what `python -m jvssl.tools.make_tfrecords` writes and DMVR readers expect):
  feature list `image/encoded`: one JPEG per frame;
  context `clip/label/index`: int64 label (absent: -1, for pretraining);
  context `caption/string`: the video's captions, a bytes list of any length (DMVR's
    text modality), read as "caption" (tf.string [N]) when one of the first records has some;
  feature list `WAVEFORM/feature/floats`: optional, the soundtrack as DMVR keeps it, one
    feature holding the whole mono waveform from the first frame on; read as each clip's
    "audio" with "has_audio" when data.audio.enabled (a record without it: zeros, has_audio 0);
  context `WAVEFORM/feature/sample_rate` (float, Hz) and `image/frame_rate` (float, fps):
    MediaSequence's keys, which DMVR's records follow, for the waveform's rate (absent:
    data.tfrecord.audio_sample_rate) and the frames' rate (absent: the frames and the
    waveform are taken to span the same time), which place each clip's audio window;
  context `video_id`: the video's path relative to the folder it was converted from.

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

import math
import struct

import numpy as np
import tensorflow as tf
from google.protobuf import message
from ml_collections import ConfigDict
from scipy import signal

from jvssl import registry
from jvssl.data import audio, bad_input, sampling
from jvssl.data.video_folder import DATA_ERROR_MARK
from jvssl.errors import ConfigError, DataError

FRAMES_KEY = "image/encoded"
LABEL_KEY = "clip/label/index"
CAPTION_KEY = "caption/string"
AUDIO_KEY = "WAVEFORM/feature/floats"
AUDIO_RATE_KEY = "WAVEFORM/feature/sample_rate"
FRAME_RATE_KEY = "image/frame_rate"
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
  return _frames_and_label(tf.train.SequenceExample.FromString(record))


def _frames_and_label(example: tf.train.SequenceExample) -> tuple[list, int]:
  labels = example.context.feature[LABEL_KEY].int64_list.value if LABEL_KEY in example.context.feature else []
  frames = example.feature_lists.feature_list[FRAMES_KEY].feature
  return [f.bytes_list.value[0] if f.bytes_list.value else b"" for f in frames], (labels[0] if labels else -1)


def load_clips(records: RecordIndex, parse, index, seed, data_config, max_retries: int, positions=None):
  """Record `index`'s clips, inside tf.data: (uint8 [T, H, W, 3] or [K, T, H, W, 3], label int32, bad int32).

  `parse(record bytes) -> (encoded frames, label)`; the rest as `load_example`.
  """
  example = load_example(
    records, lambda record: (*parse(record), None), index, seed, data_config, max_retries, positions
  )
  return example["video"], example["label"], example["bad"]


def load_example(records: RecordIndex, parse, index, seed, data_config, max_retries: int, positions=None, fields=None):
  """Record `index`'s clips and what else `parse` reads, inside tf.data: {"video": uint8 [T, H, W, 3] or
  [K, T, H, W, 3], "label": int32, "bad": int32} and each of `fields` ({name: (dtype, shape)}).

  `parse(record bytes) -> (encoded frames, label, more)` runs in Python with the frame
  choice (from `seed`, as video_folder chooses), so only the chosen frames' bytes
  enter TensorFlow; TensorFlow ops decode them (JPEG or PNG), in parallel under
  tf.data. `more(frame indices int [K, T])` gives the numpy value of each of
  `fields`, from the same parsed record (None without fields). `positions` (int
  array) maps example indices to record numbers when the examples are a subset of
  the records. bad is 1 when another record stood in.
  """
  k, t = data_config.clips_per_video, data_config.num_frames
  num_examples = len(positions) if positions is not None else len(records)
  fields = fields or {}

  def pick(index, seed):
    standins = sampling.rng_for(np.append(seed, 7))
    index = int(index)
    for attempt in range(max_retries + 1):
      record = int(positions[index]) if positions is not None else index
      try:
        frames, label, more = parse(records.read(record))
        reason = "no_frames" if not frames else ""
      except message.DecodeError:
        reason = "unparsable"
      if not reason:
        indices = frame_indices(len(frames), seed, data_config)
        chosen = [frames[i] for i in indices.reshape(-1)]
        if all(map(looks_whole, chosen)):
          values = more(indices) if fields else {}
          return [np.array(chosen, object), np.int32(label), np.int32(attempt > 0)] + [values[n] for n in fields]
        reason = "damaged_frame"
      bad_input.record_skip(records.describe(record), reason)
      index = int(standins.integers(num_examples))
    raise DataError(
      f"{DATA_ERROR_MARK} {max_retries + 1} records in a row could not be read "
      f"(last: {records.describe(record)}); rebuild the shards with python -m jvssl.tools.make_tfrecords"
    )

  dtypes = [tf.string, tf.int32, tf.int32] + [dtype for dtype, _ in fields.values()]
  encoded, label, bad, *values = tf.numpy_function(pick, [index, seed], dtypes, stateful=False)
  encoded = tf.reshape(encoded, [k * t])
  label.set_shape([])
  bad.set_shape([])
  frames = tf.stack([tf.io.decode_image(encoded[i], channels=3, expand_animations=False) for i in range(k * t)])
  video = tf.reshape(frames, tf.concat([[k, t], tf.shape(frames)[1:]], 0))
  video.set_shape([k, t, None, None, 3])
  example = {"video": video[0] if k == 1 else video, "label": label, "bad": bad}
  for (name, (_, shape)), value in zip(fields.items(), values):
    value.set_shape(shape)
    example[name] = value
  return example


def looks_whole(image: bytes) -> bool:
  """Whether encoded bytes are a whole JPEG (start marker, end marker near the end) or a PNG.

  A cut-off JPEG would stop tf.data with a decode error, so such frames are caught here.
  """
  return (image[:2] == b"\xff\xd8" and b"\xff\xd9" in image[-16:]) or image[:8] == b"\x89PNG\r\n\x1a\n"


def clip_audio(
  example: tf.train.SequenceExample, num_frames: int, indices: np.ndarray, audio_config, default_rate: float
) -> tuple[np.ndarray, np.int32]:
  """Each clip's window of a record's waveform, as video_folder cuts it from the file: (float32 [K, samples],
  has_audio int32). audio_config.seconds centred on the clip's middle frame time, zeros outside the waveform,
  resampled from the record's rate (default_rate if it does not say) to audio_config.sample_rate. A record without a
  waveform gives zeros and has_audio 0, counted as a "no_audio" repair.
  """
  clips = np.zeros([len(indices), audio.num_samples(audio_config)], np.float32)
  lists = example.feature_lists.feature_list
  stored = lists[AUDIO_KEY].feature if AUDIO_KEY in lists else []
  # DMVR's one feature with the whole waveform (upb's repeated floats convert without a copy per element).
  values = np.asarray(stored[0].float_list.value if stored else [], np.float32)
  if not len(values):
    bad_input.record_repair("no_audio")
    return clips, np.int32(0)
  context = example.context.feature
  rate = default_rate
  if AUDIO_RATE_KEY in context and context[AUDIO_RATE_KEY].float_list.value:
    rate = context[AUDIO_RATE_KEY].float_list.value[0]
  if FRAME_RATE_KEY in context and context[FRAME_RATE_KEY].float_list.value:
    fps = context[FRAME_RATE_KEY].float_list.value[0]
  else:
    fps = num_frames * rate / len(values)
  length = int(round(audio_config.seconds * rate))
  for k, centre in enumerate(audio.clip_centres(indices, fps)):
    start = int(round((centre - audio_config.seconds / 2) * rate))
    window = np.zeros(length, np.float32)
    lo, hi = max(start, 0), min(start + length, len(values))
    if hi > lo:
      window[lo - start : hi - start] = values[lo:hi]
    clips[k] = _resample(window, rate, audio_config.sample_rate, clips.shape[1])
  return clips, np.int32(1)


def _resample(wave: np.ndarray, rate: float, target: int, length: int) -> np.ndarray:
  """wave at `rate` Hz -> `length` samples at `target` Hz (polyphase, anti-aliased), cut or zero-padded."""
  if rate != target:
    g = math.gcd(int(round(rate)), int(target))
    wave = signal.resample_poly(wave, int(target) // g, int(round(rate)) // g).astype(np.float32)
  return np.pad(wave[:length], (0, max(length - len(wave), 0)))


def frame_indices(length: int, seed, data_config) -> np.ndarray:
  """int64 [K, T] frame indices for a stored video of `length` > 0 frames, picked as video_folder picks them."""
  if length < sampling.span(data_config.num_frames, data_config.frame_stride):
    bad_input.record_repair("short")
  return sampling.clip_indices(length, data_config, sampling.rng_for(seed))


@registry.SOURCES.register("tfrecord")
class TFRecordSource:
  """`load(index, seed)` -> {"video": uint8 [T, H, W, 3] or [K, T, H, W, 3], "label": int32, "bad": int32}, plus
  "caption" (tf.string [N]) when the records have captions and "audio" (float32 [samples] or [K, samples]) with
  "has_audio" (int32) when data.audio.enabled (see the module docstring)."""

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
        # Hz of waveforms in records that do not store WAVEFORM/feature/sample_rate: DMVR's generate_from_file.py
        # writes 48 kHz. Resampled to data.audio.sample_rate on reading.
        "audio_sample_rate": 48000,
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
    self.has_captions = _has_captions(self.records)

  def fields(self) -> dict[str, tuple[tf.DType, list]]:
    """What `parse`'s `more` gives besides frames and label: name -> (dtype, shape with K clips)."""
    fields = {"caption": (tf.string, [None])} if self.has_captions else {}
    if self.data.audio.enabled:
      fields["audio"] = (tf.float32, [self.data.clips_per_video, audio.num_samples(self.data.audio)])
      fields["has_audio"] = (tf.int32, [])
    return fields

  def parse(self, record: bytes) -> tuple[list, int, object]:
    """A record -> (encoded frames, label, more: frame indices [K, T] -> {caption, audio, has_audio} as fields())."""
    example = tf.train.SequenceExample.FromString(record)
    frames, label = _frames_and_label(example)

    def more(indices):
      values = {"caption": np.array(_captions(example), object)} if self.has_captions else {}
      if self.data.audio.enabled:
        values["audio"], values["has_audio"] = clip_audio(
          example, len(frames), indices, self.data.audio, self.cfg.audio_sample_rate
        )
      return values

    return frames, label, more

  def load(self, index, seed):
    """index: int64 scalar; seed: int64 [2], the per-example seed that picks the clip's frames."""
    example = load_example(self.records, self.parse, index, seed, self.data, self.cfg.max_retries, fields=self.fields())
    if "audio" in example and self.data.clips_per_video == 1:
      example["audio"] = example["audio"][0]
    return example


def _has_captions(records: RecordIndex, look: int = 4) -> bool:
  """Whether any of the first `look` parsable records has captions: the source then gives "caption" for every
  record (an empty list where one has none). Without, it gives none, so a method that needs text fails at
  start-up instead of training on empty captions. A few records, not one: converters leave out empty captions.
  """
  for i in range(min(look, len(records))):
    try:
      if _captions(tf.train.SequenceExample.FromString(records.read(i))):
        return True
    except message.DecodeError:
      continue
  return False


def _captions(example: tf.train.SequenceExample) -> list[bytes]:
  context = example.context.feature
  return list(context[CAPTION_KEY].bytes_list.value) if CAPTION_KEY in context else []


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
