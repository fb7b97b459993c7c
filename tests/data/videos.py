"""Tiny video files written with PyAV, for tests that need real containers and codecs."""

import av
import numpy as np


def frame_value(i: int) -> int:
  """The grey level of frame i: far enough apart that lossy codecs keep frames distinguishable."""
  return 20 + 12 * (i % 18)


def write_video(
  path,
  num_frames: int = 12,
  size=(32, 40),
  fps: int = 10,
  codec: str = "libx264",
  pix_fmt: str = "yuv420p",
  faststart: bool = False,
) -> str:
  """Writes frames of uniform grey frame_value(i) (size = (height, width)); returns the path.

  faststart: an mp4's index (the moov box, with every frame's size and place) goes before the frames, as
  for streaming; cut short, such a file still opens and its headers still promise every frame.
  """
  height, width = size
  with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
    stream = out.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    stream.options = {"g": "4"}  # Keyframes every 4 frames, so seeking has something to do.
    for i in range(num_frames):
      image = np.full((height, width, 3), frame_value(i), np.uint8)
      frame = av.VideoFrame.from_ndarray(image, format="rgb24")
      for packet in stream.encode(frame):
        out.mux(packet)
    for packet in stream.encode():
      out.mux(packet)
  return str(path)


def truncate_video(path, whole_frames: int) -> str:
  """Cuts a file in the middle of the data of its frame `whole_frames` (in file order), as an interrupted
  download does: the first `whole_frames` frames stay whole. Returns the path."""
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    packets = sorted((p.pos, p.size) for p in container.demux(stream) if p.size)
  pos, size = packets[whole_frames]
  with open(path, "r+b") as f:
    f.truncate(pos + size // 2)
  return str(path)
