"""Decoding video files with PyAV (FFmpeg): only the frames a clip needs, with a time limit.

FFmpeg's frame threading hangs on some files (PyAV #1849, #1962), so decoders use
slice threading; every file also gets a wall-clock limit, checked between frames
and, through PyAV's interrupt callback, inside blocking reads.
"""

import dataclasses
import math
import os
import time

import av
import numpy as np


class BadVideo(Exception):
  """A file that cannot give a clip; `reason` is a short key for the counts."""

  def __init__(self, reason: str, detail: str = ""):
    super().__init__(f"{reason}: {detail}" if detail else reason)
    self.reason, self.detail = reason, detail


@dataclasses.dataclass
class VideoInfo:
  num_frames: int
  fps: float


def open_video(path: str, timeout_s: float):
  """-> (container, video stream). Raises BadVideo("missing"|"empty"|"unreadable"|"no_video_stream")."""
  if not os.path.exists(path):
    raise BadVideo("missing")
  if os.path.getsize(path) == 0:
    raise BadVideo("empty")
  try:
    container = av.open(path, timeout=timeout_s, metadata_errors="ignore")
  except Exception as e:  # FFmpeg raises many error types for broken files; all mean the same here.
    raise BadVideo("unreadable", _short(e)) from None
  if not container.streams.video:
    container.close()
    raise BadVideo("no_video_stream")
  stream = container.streams.video[0]
  stream.codec_context.thread_type = "SLICE"
  return container, stream


def info(container, stream) -> VideoInfo:
  """Frame count and rate from the headers (estimated from the duration when the count is missing)."""
  rate = stream.average_rate or stream.guessed_rate or stream.base_rate
  fps = float(rate) if rate else 25.0
  count = stream.frames
  if not count and stream.duration and stream.time_base:
    count = int(round(float(stream.duration * stream.time_base) * fps))
  if not count and container.duration:
    count = int(round(container.duration / av.time_base * fps))
  return VideoInfo(num_frames=max(int(count), 0), fps=fps)


def read_frames(
  container, stream, indices: np.ndarray, fps: float, offset_s: float, short_side: int, deadline: float
) -> tuple[np.ndarray, bool]:
  """Frames at `indices` (sorted or not) of the video's frames counted from offset_s, uint8 [len, H, W, 3].

  Seeks to the keyframe before the first wanted frame and decodes forward only
  as far as the last. Frames are matched by time, so variable frame rates and
  gaps give the nearest later frame. Returns (frames, padded): padded is True
  when the video ended early and the last decoded frame filled the rest.
  """
  wanted = np.unique(indices)
  base = stream.start_time or 0
  tb = float(stream.time_base)
  first_time = offset_s + wanted[0] / fps
  got: dict[int, np.ndarray] = {}
  last = None  # The latest decoded frame (an av.VideoFrame until converted).
  p = 0  # wanted[:p] are filled.
  try:
    if first_time > 0:
      container.seek(base + int(max(first_time - 0.5 / fps, 0) / tb), stream=stream, backward=True)
    for frame in container.decode(stream):
      if time.monotonic() > deadline:
        raise BadVideo("timeout")
      # A frame without a timestamp is taken as the next wanted one.
      position = int(round(((frame.pts - base) * tb - offset_s) * fps)) if frame.pts is not None else wanted[p]
      if position < wanted[p]:
        last = frame
        continue
      image = to_rgb(frame, short_side)
      while p < len(wanted) and wanted[p] <= position:
        got[int(wanted[p])] = image
        p += 1
      last = image
      if p == len(wanted):
        break
  except BadVideo:
    raise
  except Exception as e:  # A decode error part-way: keep what was decoded, as for a truncated file.
    if not got:
      raise BadVideo("decode_error", _short(e)) from None
  padded = p < len(wanted)
  if padded:
    if last is None:
      raise BadVideo("no_frames")
    fill = last if isinstance(last, np.ndarray) else to_rgb(last, short_side)
    for i in wanted[p:]:
      got[int(i)] = fill
  return np.stack([got[int(i)] for i in indices]), padded


def to_rgb(frame, short_side: int) -> np.ndarray:
  """An av.VideoFrame in any pixel format (grayscale, 4:2:2, odd sizes) -> uint8 [H, W, 3].

  short_side > 0 scales the frame down so its shorter side is short_side.
  """
  w, h = frame.width, frame.height
  if short_side and min(w, h) > short_side:
    scale = short_side / min(w, h)
    w, h = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
  return frame.to_ndarray(format="rgb24", width=w, height=h)


def _short(e: Exception) -> str:
  return f"{type(e).__name__}: {e}".splitlines()[0][:200]


def read_all_frames(
  path: str, start_s: float = 0.0, end_s: float = 0.0, fps: float = 0.0, short_side: int = 0, timeout_s: float = 60.0
) -> tuple[np.ndarray, float]:
  """Every frame of a file from start_s to end_s (0: its end), for conversion: (uint8 [N, H, W, 3], fps).

  fps > 0 resamples to that rate. Frame i is the one video_folder's sampling
  would read as frame i (matched by time, gaps filled with the next frame, as
  many frames as the headers give), so conversion keeps clip indices aligned.
  Raises BadVideo.
  """
  deadline = time.monotonic() + timeout_s
  container, stream = open_video(path, timeout_s)
  try:
    meta = info(container, stream)
    rate = fps or meta.fps
    length = meta.num_frames - int(round(start_s * meta.fps))
    if end_s > start_s:
      window = int(round((end_s - start_s) * meta.fps))
      length = min(length, window) if meta.num_frames else window
    length = int(length * rate / meta.fps) if length > 0 else 0
    base, tb = stream.start_time or 0, float(stream.time_base)
    frames: list[np.ndarray] = []
    try:
      if start_s > 0:
        container.seek(base + int(max(start_s - 0.5 / meta.fps, 0) / tb), stream=stream, backward=True)
      for frame in container.decode(stream):
        if time.monotonic() > deadline:
          raise BadVideo("timeout")
        if frame.pts is None:
          position = len(frames)
        else:  # Output frame k is the first frame at or after time k / rate.
          source_position = round(((frame.pts - base) * tb - start_s) * meta.fps)
          position = math.floor(source_position * rate / meta.fps + 1e-6)
        if position < len(frames):
          continue
        if length and position >= length:
          break
        image = to_rgb(frame, short_side)
        frames.extend([image] * (position + 1 - len(frames)))
    except BadVideo:
      raise
    except Exception as e:  # A decode error part-way: keep what was decoded, as read_frames does.
      if not frames:
        raise BadVideo("decode_error", _short(e)) from None
  finally:
    container.close()
  if not frames:
    raise BadVideo("no_frames")
  frames.extend([frames[-1]] * (length - len(frames)))  # A file shorter than its headers: pad as read_frames does.
  return np.stack(frames), rate
