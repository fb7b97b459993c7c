"""Converts a folder of videos + annotation list into JPEG-frame TFRecord shards (the DMVR layout).

  python -m jvssl.tools.make_tfrecords --videos=DIR --list=FILE --out=DIR --shards=N \
      [--short_side=S] [--fps=F] [--quality=Q] [--frame_format=jpeg|png|stored] [--workers=W] [--name=train] \
      [--audio [--audio_rate=HZ]]

Writes `{out}/{name}-{i:05d}-of-{N:05d}` and its `.index` (record offsets), then
points data.tfrecord.{split}_files at `{out}/{name}-*-of-*`. Shard i holds a
contiguous run of the list, so records keep the list's order: a run from the
TFRecords with the same seed samples the same clips as one from the folder.
Each shard is written to a temporary file and renamed when complete, so an
interrupted conversion resumes by skipping finished shards. Videos that cannot
be read are left out (the later records move up by one) and listed with their
reasons in `{out}/{name}.bad_videos.tsv`; a truncated video is written with the
frames it holds (what the video_folder source samples from) and listed there too,
as "truncated: header 132 frames, decoded 47".

--frame_format=stored keeps the pixels as they are (PNG without compression, about
12x JPEG's bytes): the reader's image decode becomes a copy, for hosts whose CPUs
cannot decode JPEG as fast as the accelerators train (jvssl.tools.bench_input
compares the two); png is lossless and compressed.

A list with a caption column (see jvssl/data/video_folder.py) writes each video's
captions to `caption/string`. --audio also stores each video's soundtrack, mono at
--audio_rate, over the frames' time as DMVR does (`WAVEFORM/feature/floats`, with its
rate and the frames' rate under MediaSequence's keys; see jvssl/data/tfrecord.py).
A video without an audio track is written without one; one whose audio cannot be
read is written without it and listed as "audio <reason>".
"""

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import time

from jvssl import cli  # First: it quiets TensorFlow's start-up before anything imports TensorFlow.

# isort: split

import tensorflow as tf

from jvssl.data import audio, tfrecord, video_decode, video_folder
from jvssl.errors import UserError


def parse_args(argv):
  p = argparse.ArgumentParser(
    prog="python -m jvssl.tools.make_tfrecords",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--videos", required=True, help="folder the list's paths are relative to")
  p.add_argument(
    "--list", required=True, help="annotation list (`path label` lines or CSV path[,label][,start,end][,caption])"
  )
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--shards", type=int, required=True, help="number of shards")
  p.add_argument("--name", default="", help="shard name prefix (default: the list's file name without extension)")
  p.add_argument("--short_side", type=int, default=0, help="> 0: scale frames down to this short side")
  p.add_argument("--fps", type=float, default=0.0, help="> 0: resample to this frame rate")
  p.add_argument("--quality", type=int, default=90, help="JPEG quality")
  p.add_argument(
    "--frame_format",
    choices=FRAME_FORMATS,
    default="jpeg",
    help="jpeg; png (lossless); stored (pixels as they are: PNG without compression, decoded by a copy)",
  )
  p.add_argument("--workers", type=int, default=1, help="shards converted in parallel processes")
  p.add_argument("--timeout_s", type=float, default=120.0, help="wall-clock limit per video")
  p.add_argument("--audio", action="store_true", help="also store each video's soundtrack (mono)")
  p.add_argument("--audio_rate", type=int, default=16000, help="Hz of the stored soundtrack (data.audio.sample_rate)")
  return p.parse_args(argv)


def shard_path(out: str, name: str, i: int, n: int) -> str:
  return os.path.join(out, f"{name}-{i:05d}-of-{n:05d}")


FRAME_FORMATS = ("jpeg", "png", "stored")


def encode_frame(frame, frame_format: str, quality: int) -> bytes:
  if frame_format == "jpeg":
    return tf.io.encode_jpeg(frame, quality=quality).numpy()
  return tf.io.encode_png(frame, compression=0 if frame_format == "stored" else -1).numpy()


def serialize(
  frames,
  label: int,
  video_id: str,
  quality: int,
  fps: float = 0.0,
  captions=(),
  sound=None,
  audio_rate: int = 0,
  frame_format: str = "jpeg",
) -> bytes:
  """One SequenceExample: frames (encoded as frame_format) under image/encoded, label under clip/label/index
  (if >= 0), the frames' rate (if > 0), captions under caption/string (if any), and `sound` (float32 [samples] at
  audio_rate Hz, from the first frame on; None: no audio track) under WAVEFORM/feature/floats."""
  ex = tf.train.SequenceExample()
  ex.context.feature["video_id"].bytes_list.value.append(video_id.encode())
  if label >= 0:
    ex.context.feature[tfrecord.LABEL_KEY].int64_list.value.append(label)
  if fps > 0:
    ex.context.feature[tfrecord.FRAME_RATE_KEY].float_list.value.append(fps)
  if captions:
    ex.context.feature[tfrecord.CAPTION_KEY].bytes_list.value.extend(c.encode() for c in captions)
  if sound is not None:
    ex.context.feature[tfrecord.AUDIO_RATE_KEY].float_list.value.append(audio_rate)
    ex.feature_lists.feature_list[tfrecord.AUDIO_KEY].feature.add().float_list.value.extend(sound)
  images = ex.feature_lists.feature_list[tfrecord.FRAMES_KEY]
  for frame in frames:
    images.feature.add().bytes_list.value.append(encode_frame(frame, frame_format, quality))
  return ex.SerializeToString()


def soundtrack(entry, video: video_decode.Decoded, args):
  """The entry's audio over its written frames' time, (float32 [samples] or None without a track, note); the note
  names why the audio was left out of a video that has some ("" if it was not)."""
  try:
    sound, has_audio = audio.decode_audio(
      entry.path, entry.start, len(video.frames) / video.fps, args.audio_rate, args.timeout_s
    )
  except audio.BadAudio as e:
    return None, f"audio {e.reason}" + (f": {e.detail}" if e.detail else "")
  return (sound if has_audio else None), ""


# Kinds of note a shard's .index keeps about its videos, so a resumed conversion still reports them.
SKIPPED, REPAIRED = "skipped", "repaired"


def convert_shard(entries, path: str, args, on_video=None) -> list[tuple[str, str, str]]:
  """Writes one shard (+ .index) atomically; returns its notes, (SKIPPED or REPAIRED, video path, reason)."""
  notes, lengths = [], []
  tmp = f"{path}.tmp{os.getpid()}"
  with tf.io.TFRecordWriter(tmp) as writer:
    for entry in entries:
      try:
        video = video_decode.decode_all(entry.path, entry.start, entry.end, args.fps, args.short_side, args.timeout_s)
        sound, audio_note = soundtrack(entry, video, args) if args.audio else (None, "")
        data = serialize(
          video.frames,
          entry.label,
          os.path.relpath(entry.path, args.videos),
          args.quality,
          fps=video.fps,
          captions=entry.captions,
          sound=sound,
          audio_rate=args.audio_rate,
          frame_format=args.frame_format,
        )
        writer.write(data)
        lengths.append(len(data))
        for note in (video.note(), audio_note):
          if note:
            notes.append((REPAIRED, entry.path, note))
      except video_decode.BadVideo as e:
        notes.append((SKIPPED, entry.path, str(e)))
      if on_video:
        on_video()
  tfrecord.write_index(path, tfrecord.offsets_from_lengths(lengths), ["\t".join(note) for note in notes])
  tf.io.gfile.rename(tmp, path, overwrite=True)  # Last: a shard exists only once it and its index are complete.
  return notes


def notes_in(path: str) -> list[tuple[str, str, str]]:
  """The notes convert_shard wrote into shard `path`'s .index."""
  with tf.io.gfile.GFile(path + tfrecord.INDEX_SUFFIX) as f:
    lines = [line.rstrip("\n")[2:] for line in f if line.startswith((f"# {SKIPPED}\t", f"# {REPAIRED}\t"))]
  return [tuple(line.split("\t", 2)) for line in lines]


class Progress:
  """A one-line progress bar on stderr: done/total videos, rate and time left."""

  def __init__(self, total: int):
    self.total, self.done, self.start = total, 0, time.monotonic()

  def advance(self, n: int = 1):
    self.done += n
    elapsed = time.monotonic() - self.start
    rate = self.done / elapsed if elapsed > 0 else 0.0
    left = (self.total - self.done) / rate if rate else 0.0
    filled = int(30 * self.done / max(self.total, 1))
    sys.stderr.write(
      f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} videos, {rate:.1f}/s, {left:.0f}s left "
    )
    sys.stderr.flush()


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return cli.run(lambda: convert(args))


def convert(args) -> None:
  """Writes the shards `args` (from parse_args) asks for, skipping those already there, and the list of bad
  videos; UserError for a list that cannot be read."""
  if args.shards < 1:
    raise UserError("--shards must be >= 1")
  entries = video_folder.read_list(args.list, args.videos)
  name = args.name or os.path.splitext(os.path.basename(args.list))[0]
  tf.io.gfile.makedirs(args.out)
  n = args.shards
  bounds = [len(entries) * i // n for i in range(n + 1)]
  todo = [i for i in range(n) if not tf.io.gfile.exists(shard_path(args.out, name, i, n))]
  print(f"{len(entries)} videos -> {n} shards in {args.out} ({n - len(todo)} already done)", file=sys.stderr)
  progress = Progress(sum(bounds[i + 1] - bounds[i] for i in todo))
  if args.workers > 1:
    # Spawned, not forked: TensorFlow's runtime does not survive a fork.
    with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
      jobs = {
        pool.submit(convert_shard, entries[bounds[i] : bounds[i + 1]], shard_path(args.out, name, i, n), args): i
        for i in todo
      }
      for job in concurrent.futures.as_completed(jobs):
        job.result()
        progress.advance(bounds[jobs[job] + 1] - bounds[jobs[job]])
  else:
    for i in todo:
      convert_shard(entries[bounds[i] : bounds[i + 1]], shard_path(args.out, name, i, n), args, progress.advance)
  sys.stderr.write("\n")
  notes = [note for i in range(n) for note in notes_in(shard_path(args.out, name, i, n))]
  bad_list = os.path.join(args.out, f"{name}.bad_videos.tsv")
  with tf.io.gfile.GFile(bad_list, "w") as f:
    f.write("".join(f"{p}\t{reason}\n" for _, p, reason in notes))
  skipped = sum(kind == SKIPPED for kind, _, _ in notes)
  truncated = sum(kind == REPAIRED and reason.startswith("truncated") for kind, _, reason in notes)
  no_audio = sum(kind == REPAIRED and reason.startswith("audio ") for kind, _, reason in notes)
  print(
    f"done: {len(entries) - skipped} videos written"
    + (f" ({truncated} of them truncated, kept as the frames they hold)" if truncated else "")
    + (f" ({no_audio} of them without their audio, which could not be read)" if no_audio else "")
    + f", {skipped} skipped (each listed with its reason in {bad_list}); read them with --config.data.source=tfrecord "
    f"--config.data.tfrecord.train_files='{os.path.join(args.out, f'{name}-*-of-{n:05d}')}'",
    file=sys.stderr,
  )


if __name__ == "__main__":
  sys.exit(main())
