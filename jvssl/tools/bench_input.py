"""Input throughput: decoded clips/s for video files and TFRecords against a plain PyAV loop, from one run.

  python -m jvssl.tools.bench_input --config=configs/videomae_k400.py:vit_b [--videos=DIR --list=FILE]

Without --videos it writes its own mp4s (--num_videos of --length frames at
--width x --height, H.264) to a temporary folder. The videos are converted to
TFRecords (JPEG frames, as make_tfrecords does), then three readers make clips of
the config's shape (data.num_frames x data.image_size^2, data.frame_stride):
  pyav_loop:     a plain Python loop: open the file, decode from its start to the
                 last frame the clip needs, centre-crop (what a naive loader does);
  video_folder:  jvssl's video_folder source through tf.data (seeking decode + augmentation);
  tfrecord:      jvssl's tfrecord source through tf.data (JPEG decode + augmentation).
  tfrecord:FORMAT: the same from records of another --frame_formats entry (stored:
                 pixels kept as they are, the pre-decoded option);
  tfrecord+service: the tfrecord reader through a tf.data service (--service, e.g.
                 in_process:2: a dispatcher and two workers; jvssl/data/service.py).
Printed per reader: clips/s (wall clock, all cores) and clips per CPU-second
(per-core throughput: CPU time of every thread of the process), and both as
ratios to the PyAV loop. With --train_step the config's compiled train step is
timed at --batch_size too, and each reader is said to keep up with it or not
(input clips/s against train clips/s).
"""

import os
import resource
import sys
import tempfile
import time

from jvssl import cli  # First: it sets TF_CPP_MIN_LOG_LEVEL before anything imports TensorFlow.

# isort: split

import av
import numpy as np

from jvssl.data import pipeline, sampling, tfrecord, video_decode, video_folder
from jvssl.errors import UserError
from jvssl.tools import make_tfrecords


def parse_args(argv):
  p = cli.parser(
    "python -m jvssl.tools.bench_input",
    __doc__,
    config_help="recipe whose data section sets the clip shape and augmentation",
  )
  p.add_argument("--videos", default="", help="folder of videos (default: write synthetic ones)")
  p.add_argument("--list", default="", help="annotation list of --videos")
  p.add_argument("--num_videos", type=int, default=16)
  p.add_argument("--length", type=int, default=300, help="frames per written video")
  p.add_argument("--width", type=int, default=320)
  p.add_argument("--height", type=int, default=256)
  p.add_argument(
    "--grain",
    type=float,
    default=8.0,
    help="std of the per-frame sensor grain of written videos: 8 gives about 1.5 kB/frame at CRF 23",
  )
  p.add_argument("--clips", type=int, default=64, help="clips timed per reader (after one warm-up batch)")
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--workdir", default="", help="where videos and TFRecords go (default: a temporary folder)")
  p.add_argument(
    "--frame_formats",
    default="jpeg",
    help="frame formats of the TFRecords timed, jpeg first (e.g. jpeg,stored: make_tfrecords --frame_format)",
  )
  p.add_argument("--service", default="", help="also time the tfrecord reader through this data.service.address")
  p.add_argument("--train_step", action="store_true", help="time the config's train step and compare")
  p.add_argument("--train_steps", type=int, default=3, help="timed train steps (after 1 warm-up) with --train_step")
  return cli.parse(p, argv)


def write_videos(folder: str, n: int, length: int, width: int, height: int, grain: float) -> str:
  """n H.264 mp4s (CRF 23) of a textured background panning one way and an object crossing the other way,
  with fresh sensor grain in every frame; -> the list path.

  Smooth textures plus grain give H.264 and JPEG sizes near real footage's
  (pure noise, or a still pan, would make decoding unrealistically slow or fast);
  main() prints the sizes so the numbers can be judged.
  """
  rng = np.random.default_rng(0)
  lines = []
  for v in range(n):
    background = scene(rng, height + length, width + length)
    thing = scene(rng, height // 2, width // 3)
    path = os.path.join(folder, f"video_{v:03d}.mp4")
    with av.open(path, "w") as out:
      stream = out.add_stream("libx264", rate=25)
      stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
      stream.options = {"g": "25", "crf": "23", "preset": "veryfast"}
      for i in range(length):
        image = background[i : i + height, i : i + width].astype(np.int16)
        x = (width - thing.shape[1]) * (length - 1 - i) // max(length - 1, 1)
        y = height // 4 + int(height / 8 * np.sin(i / 10))
        image[y : y + thing.shape[0], x : x + thing.shape[1]] = thing
        image += rng.normal(0, grain, image.shape).astype(np.int16)
        frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
        for packet in stream.encode(frame):
          out.mux(packet)
      for packet in stream.encode():
        out.mux(packet)
    lines.append(f"{os.path.basename(path)} {v % 4}\n")
  list_path = os.path.join(folder, "train.txt")
  with open(list_path, "w") as f:
    f.writelines(lines)
  return list_path


def scene(rng: np.random.Generator, height: int, width: int, cell: int = 24) -> np.ndarray:
  """uint8 [height, width, 3]: random colours on a coarse grid, smoothed, plus fine static texture."""
  coarse = rng.uniform(0, 255, (height // cell + 2, width // cell + 2, 3))
  image = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[: height + cell, : width + cell]
  for axis in (0, 1):  # A box filter as wide as a cell turns the blocks into smooth ramps.
    c = np.cumsum(image, axis=axis)
    image = np.take(c, range(cell, c.shape[axis]), axis=axis) - np.take(c, range(c.shape[axis] - cell), axis=axis)
    image /= cell
  image = image[:height, :width] + rng.normal(0, 4, (height, width, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def frame_sizes(entries, folders: dict[str, str]) -> str:
  """Mean stored bytes per frame of the videos and of their TFRecords (per frame format), as a line to print."""
  frames = 0
  for entry in entries:
    with av.open(entry.path) as container:
      frames += video_decode.info(container, container.streams.video[0]).num_frames
  video_bytes = sum(os.path.getsize(e.path) for e in entries)
  records = ", ".join(
    f"{name} {sum(os.path.getsize(f) for f in tfrecord.shard_files(f'{folder}/bench-*-of-*')) / frames / 1e3:.1f}"
    for name, folder in folders.items()
  )
  return (
    f"{len(entries)} videos, {frames} frames; video files {video_bytes / frames / 1e3:.1f} kB/frame, "
    f"TFRecords kB/frame: {records}"
  )


def cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def pyav_loop(entries, data, clips: int) -> tuple[float, float]:
  """(wall s, CPU s) for `clips` clips from a plain loop: decode from frame 0 to the last needed frame."""
  rng = np.random.default_rng(0)
  size = data.image_size
  wall, cpu = time.perf_counter(), cpu_seconds()
  for c in range(clips):
    entry = entries[c % len(entries)]
    with av.open(entry.path) as container:
      stream = container.streams.video[0]
      stream.codec_context.thread_type = "SLICE"
      indices = sampling.clip_indices(video_decode.info(container, stream).num_frames, data, rng).reshape(-1)
      wanted, frames = set(indices.tolist()), {}
      for i, frame in enumerate(container.decode(stream)):
        if i in wanted:
          image = frame.to_ndarray(format="rgb24")
          top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
          frames[i] = image[top : top + size, left : left + size]
        if i >= indices.max():
          break
      np.stack([frames[i] for i in indices])
  return time.perf_counter() - wall, cpu_seconds() - cpu


def tf_data_reader(config, clips: int) -> tuple[float, float]:
  """(wall s, CPU s) for `clips` clips from jvssl's pipeline, after one warm-up batch."""
  batches = pipeline.numpy_batches(pipeline.train_dataset(config))
  next(batches)
  wall, cpu = time.perf_counter(), cpu_seconds()
  for _ in range(-(-clips // config.data.batch_size)):
    next(batches)
  return time.perf_counter() - wall, cpu_seconds() - cpu


def main(argv=None) -> int:
  args, overrides = parse_args(argv)
  return cli.run(lambda: bench(args, overrides))


def bench(args, overrides: list[str]) -> None:
  """Writes (or reads) the videos and their TFRecords, times each reader and prints the table."""
  formats = args.frame_formats.split(",")  # Checked before minutes of writing videos.
  if formats[0] != "jpeg" or any(f not in make_tfrecords.FRAME_FORMATS for f in formats):
    raise UserError(f"--frame_formats must start with jpeg and name some of {make_tfrecords.FRAME_FORMATS}")
  workdir = args.workdir or tempfile.mkdtemp(prefix="jvssl_bench_input_")
  videos, list_path = args.videos, args.list
  if not videos:
    videos = os.path.join(workdir, "videos")
    os.makedirs(videos, exist_ok=True)
    print(f"writing {args.num_videos} videos of {args.length} frames at {args.width}x{args.height} to {videos}")
    list_path = write_videos(videos, args.num_videos, args.length, args.width, args.height, args.grain)
  folders = {f: os.path.join(workdir, "tfrecords" if f == "jpeg" else f"tfrecords_{f}") for f in formats}
  for frame_format, records in folders.items():
    print(f"converting to TFRecords ({frame_format} frames) in {records}")
    make_tfrecords.convert(
      make_tfrecords.parse_args(
        [
          f"--videos={videos}",
          f"--list={list_path}",
          f"--out={records}",
          "--shards=4",
          "--name=bench",
          f"--workers={min(4, os.cpu_count() or 1)}",
          f"--frame_format={frame_format}",
        ]
      )
    )
  records = folders["jpeg"]
  base = [
    f"data.video_folder.root={videos}",
    f"data.video_folder.train_list={list_path}",
    f"data.tfrecord.train_files={records}/bench-*-of-*",
    f"data.batch_size={args.batch_size}",
    *overrides,
  ]
  configs = {
    name: cli.load_config(args.config, [f"data.source={name}"] + base) for name in ("video_folder", "tfrecord")
  }
  for frame_format in formats[1:]:
    configs[f"tfrecord:{frame_format}"] = cli.load_config(
      args.config,
      ["data.source=tfrecord"] + base + [f"data.tfrecord.train_files={folders[frame_format]}/bench-*-of-*"],
    )
  if args.service:
    configs["tfrecord+service"] = cli.load_config(
      args.config, ["data.source=tfrecord", f"data.service.address={args.service}"] + base
    )
  data = configs["tfrecord"].data
  shape = f"{data.num_frames}x{data.image_size}x{data.image_size} (stride {data.frame_stride})"
  print(f"clips of {shape}; {len(os.sched_getaffinity(0))} cores available; {args.clips} clips per reader")
  entries = video_folder.read_list(list_path, videos)
  print(frame_sizes(entries, folders))
  results = {"pyav_loop": pyav_loop(entries, data, args.clips)}
  for name, config in configs.items():
    results[name] = tf_data_reader(config, args.clips)
  clips = {"pyav_loop": args.clips, **{n: -(-args.clips // args.batch_size) * args.batch_size for n in configs}}
  base_rate = args.clips / results["pyav_loop"][0]
  base_per_core = args.clips / results["pyav_loop"][1]
  train_rate = train_clips_per_s(configs["tfrecord"], args.train_steps) if args.train_step else None
  if train_rate:
    print(f"train step: {train_rate:.2f} clips/s at batch {args.batch_size} ({args.train_steps} steps)")
  print(f"{'reader':<18}{'clips/s':>10}{'x PyAV':>9}{'clips/CPU-s':>13}{'x PyAV':>9}{'keeps up':>10}")
  for name, (wall, cpu) in results.items():
    rate, per_core = clips[name] / wall, clips[name] / cpu
    keeps_up = "" if train_rate is None else ("yes" if rate >= train_rate else f"no ({rate / train_rate:.2f}x)")
    print(
      f"{name:<18}{rate:>10.2f}{rate / base_rate:>9.2f}{per_core:>13.2f}{per_core / base_per_core:>9.2f}{keeps_up:>10}"
    )


def train_clips_per_s(config, steps: int) -> float:
  """Clips/s of the config's compiled train step on random clips (the step alone, no input), on this machine's
  devices: what the input has to keep up with."""
  from jvssl.tools import benchmark  # Imports JAX's trainer only when asked.

  step, _ = benchmark.jvssl_step(config, warmup=1)
  start = time.perf_counter()
  for _ in range(steps):
    step()
  return steps * config.data.batch_size / (time.perf_counter() - start)


if __name__ == "__main__":
  sys.exit(main())
