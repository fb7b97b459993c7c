"""Tiny video files written with PyAV, for tests that need real containers and codecs."""

import av
import numpy as np


def frame_value(i: int) -> int:
  """The grey level of frame i: far enough apart that lossy codecs keep frames distinguishable."""
  return 20 + 12 * (i % 18)


def write_video(
  path, num_frames: int = 12, size=(32, 40), fps: int = 10, codec: str = "libx264", pix_fmt: str = "yuv420p"
) -> str:
  """Writes frames of uniform grey frame_value(i) (size = (height, width)); returns the path."""
  height, width = size
  with av.open(str(path), "w") as out:
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
