"""Decoding video files with PyAV (FFmpeg): only the frames a clip needs, with a time limit.

FFmpeg's frame threading hangs on some files (PyAV #1849, #1962), so decoders use
slice threading; every file also gets a wall-clock limit, checked between frames
and, through PyAV's interrupt callback, inside blocking reads.

A truncated file (an mp4 cut short keeps headers that promise every frame) is the
frames its data still holds: `frame_count` finds how many, and every reader, the
video-folder source and the converters alike, samples or writes within that count.
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


def open_container(path: str, timeout_s: float, error=BadVideo):
  """The media file opened with PyAV. Raises error(reason[, detail]) for "missing", "empty" or "unreadable"."""
  if not os.path.exists(path):
    raise error("missing")
  if os.path.getsize(path) == 0:
    raise error("empty")
  try:
    return av.open(path, timeout=timeout_s, metadata_errors="ignore")
  except Exception as e:  # FFmpeg raises many error types for broken files; all mean the same here.
    raise error("unreadable", short_error(e)) from None


def open_video(path: str, timeout_s: float):
  """-> (container, video stream). Raises BadVideo("missing"|"empty"|"unreadable"|"no_video_stream")."""
  container = open_container(path, timeout_s)
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


# Frames a whole file's last packet may fall short of its headers' count (counts estimated from durations
# are rounded); a file whose data stops earlier than that is truncated.
_END_SLACK = 1


def frame_count(container, stream, meta: VideoInfo, deadline: float) -> int:
  """The frames the file holds, counted from its start: the headers' meta.num_frames, or, for a truncated
  file, up to the last packet whose data is all there (0: the headers give no count).

  Reads packets without decoding them: the last one for a whole file, all of them for a truncated one.
  Leaves the container at no particular position. Raises BadVideo: "no_frames" when the headers promise
  frames and no packet is whole, "unreadable" when the file cannot seek, "timeout".
  """
  if not meta.num_frames:
    return 0
  enough = meta.num_frames - 1 - _END_SLACK
  # From the packet of the headers' last frame itself (any_frame: not its keyframe).
  if _last_whole_frame(container, stream, meta, deadline, meta.num_frames - 1, enough) >= enough:
    return meta.num_frames
  count = _last_whole_frame(container, stream, meta, deadline, 0) + 1
  if not count:
    raise BadVideo("no_frames", f"truncated: the header gives {meta.num_frames} frames, none is whole")
  return count


def _last_whole_frame(container, stream, meta: VideoInfo, deadline: float, start: int, enough: int = -1) -> int:
  """The largest frame position among the packets from frame `start` on, read until the data ends, a packet
  is damaged (cut off) or one at `enough` or later is found (enough >= 0); -1 if none is whole."""
  base, tb = stream.start_time or 0, float(stream.time_base)
  try:
    _seek(container, stream, start / meta.fps, meta.fps, any_frame=start > 0)
  except Exception as e:  # Sampling seeks too, so a file that cannot seek cannot give clips.
    raise BadVideo("unreadable", f"cannot seek: {short_error(e)}") from None
  last = -1
  try:
    for packet in container.demux(stream):
      if time.monotonic() > deadline:
        raise BadVideo("timeout")
      if packet.is_corrupt:
        break
      stamp = packet.pts if packet.pts is not None else packet.dts
      if not packet.size or stamp is None:
        continue
      last = max(last, int(round((stamp - base) * tb * meta.fps)))
      if 0 <= enough <= last:
        break
  except BadVideo:
    raise
  except Exception:  # The demuxer's error at the cut is where the data ends.
    pass
  return last


def window_length(num_frames: int, fps: float, start_s: float, end_s: float) -> int:
  """Frames of a video of num_frames (0: unknown) within [start_s, end_s) seconds (end_s <= start_s: to the end)."""
  length = num_frames - int(round(start_s * fps))
  if end_s > start_s:
    window = int(round((end_s - start_s) * fps))
    length = min(length, window) if num_frames else window
  return length


def _seek(container, stream, time_s: float, fps: float, any_frame: bool = False) -> None:
  """Positions the demuxer at the keyframe before time_s (any_frame: at the frame itself), half a frame early
  so rounded timestamps still land on the wanted frame."""
  base, tb = stream.start_time or 0, float(stream.time_base)
  container.seek(base + int(max(time_s - 0.5 / fps, 0) / tb), stream=stream, backward=True, any_frame=any_frame)


def _decode(container, stream):
  """The stream's frames from the current position, in order.

  Stops at the first damaged packet (the cut-off end of a truncated file) or decode error, after taking the
  frames the decoder still holds, so every whole packet's frame comes out; then re-raises the error, if any.
  """
  try:
    for packet in container.demux(stream):
      if packet.is_corrupt:
        break
      yield from packet.decode()  # The empty packet at the end drains the decoder.
    else:
      return
  except Exception:
    yield from _drain(stream)
    raise
  yield from _drain(stream)


def _drain(stream) -> list:
  try:
    return stream.codec_context.decode(None)
  except Exception:  # A decoder that failed may not drain; what it gave before is kept.
    return []


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
  got: dict[int, np.ndarray] = {}
  last = None  # The latest decoded frame (an av.VideoFrame until converted).
  p = 0  # wanted[:p] are filled.
  try:
    _seek(container, stream, offset_s + wanted[0] / fps, fps)
    for frame in _decode(container, stream):
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
  except Exception as e:  # A decode error part-way: keep what was decoded, pad the rest.
    if not got:
      raise BadVideo("decode_error", short_error(e)) from None
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


def short_error(e: Exception) -> str:
  """An exception as one line of at most 200 characters, for the counts' details (FFmpeg's can run long)."""
  return f"{type(e).__name__}: {e}".splitlines()[0][:200]


@dataclasses.dataclass
class Decoded:
  """A whole video as decode_all gives it."""

  frames: np.ndarray  # uint8 [N, H, W, 3].
  fps: float
  header_frames: int  # What the file's headers promise (0: no count).
  whole_frames: int  # What its data holds (frame_count); fewer than header_frames for a truncated file.

  @property
  def truncated(self) -> bool:
    return self.whole_frames < self.header_frames

  def note(self) -> str:
    """The repair, for lists of bad input: "truncated: header 132 frames, decoded 47" ("" if none)."""
    return f"truncated: header {self.header_frames} frames, decoded {self.whole_frames}" if self.truncated else ""


def decode_all(
  path: str, start_s: float = 0.0, end_s: float = 0.0, fps: float = 0.0, short_side: int = 0, timeout_s: float = 60.0
) -> Decoded:
  """Every frame of a file from start_s to end_s (0: its end), for conversion.

  fps > 0 resamples to that rate. Frame i is the one video_folder's sampling
  would read as frame i (matched by time, gaps filled with the next frame, as
  many frames as frame_count gives), so conversion keeps clip indices aligned.
  Raises BadVideo.
  """
  deadline = time.monotonic() + timeout_s
  container, stream = open_video(path, timeout_s)
  try:
    meta = info(container, stream)
    count = frame_count(container, stream, meta, deadline)
    rate = fps or meta.fps
    length = window_length(count, meta.fps, start_s, end_s)
    length = int(length * rate / meta.fps) if length > 0 else 0
    base, tb = stream.start_time or 0, float(stream.time_base)
    frames: list[np.ndarray] = []
    try:
      _seek(container, stream, start_s, meta.fps)
      for frame in _decode(container, stream):
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
        raise BadVideo("decode_error", short_error(e)) from None
  finally:
    container.close()
  if not frames:
    raise BadVideo("no_frames")
  frames.extend([frames[-1]] * (length - len(frames)))  # Fewer frames than counted: pad as read_frames does.
  return Decoded(np.stack(frames), rate, meta.num_frames, count or meta.num_frames)


def read_all_frames(
  path: str, start_s: float = 0.0, end_s: float = 0.0, fps: float = 0.0, short_side: int = 0, timeout_s: float = 60.0
) -> tuple[np.ndarray, float]:
  """decode_all's (frames uint8 [N, H, W, 3], fps), for readers that do not report repairs."""
  video = decode_all(path, start_s, end_s, fps, short_side, timeout_s)
  return video.frames, video.fps
