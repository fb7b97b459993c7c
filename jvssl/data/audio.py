"""Audio for clips: the synthetic set's soundtrack, the audio track of video files, and log-mel spectrograms.

Every clip's audio is a fixed `data.audio.seconds` of mono float32 waveform at
`sample_rate`, so batches stay rectangular and an audio model's token grid is
fixed; `log_mel` turns it into [frames, num_mel_bins] (`spectrogram_shape`).

The synthetic soundtrack is tied to what the video shows, so a model has to
relate sound and picture: the shape sets the pitch and timbre, the motion is
heard as a change over the clip (see `MOTION_SOUNDS`). Loudness, noise, exact
pitch and phases are drawn per clip, so none of them alone names a clip.
"""

import functools
import math
import time

import av
import numpy as np
import tensorflow as tf
from ml_collections import ConfigDict

from jvssl.data import video_decode
from jvssl.errors import DataError


def default_config() -> ConfigDict:
  """The `data.audio` section."""
  return ConfigDict(
    {
      # Sources add each clip's waveform, "audio": float32 [num_samples] ([K, num_samples] for K clips), and
      # "has_audio" (0 for a video without sound, whose waveform is zeros).
      "enabled": False,
      "sample_rate": 16000,  # Hz, as AST, VATT and most audio models.
      # Audio per clip. 2.56 s is 256 spectrogram frames at a 10 ms step: 16 rows of 16-frame patches. It covers
      # a 16-frame clip at stride 4 at 25-30 fps; video_folder centres it on the clip.
      "seconds": 2.56,
      # 64 bins, as VGGish and PANNs (AST uses 128): at 16 kHz, 64 bins already resolve harmonics below 1 kHz,
      # and they fit 4 rows of 16-bin patches.
      "num_mel_bins": 64,
      "frame_length_ms": 25.0,  # STFT window (Hann), as AST, VGGish.
      "frame_step_ms": 10.0,
      "fmin": 125.0,  # Hz, the mel filterbank's edges (VGGish's): below 125 Hz is mostly hum.
      "fmax": 7500.0,
      "log_offset": 0.01,  # log(mel magnitude + offset): silence is log(0.01) = -4.6, not -inf.
    }
  )


def clip_centres(indices: np.ndarray, fps: float) -> np.ndarray:
  """Frame indices [K, T] of K clips -> the time of each clip's middle, in seconds from frame 0 [K]: where its
  audio window is centred, in every source."""
  return (indices[:, 0] + indices[:, -1]) / 2 / fps


def num_samples(config) -> int:
  """Samples of one clip's waveform."""
  return int(round(config.seconds * config.sample_rate))


def _stft_sizes(config) -> tuple[int, int, int]:
  """(frame_length, frame_step, fft_length) in samples."""
  frame_length = int(round(config.sample_rate * config.frame_length_ms / 1000))
  frame_step = int(round(config.sample_rate * config.frame_step_ms / 1000))
  return frame_length, frame_step, 1 << (frame_length - 1).bit_length()


def spectrogram_shape(config) -> tuple[int, int]:
  """(frames, num_mel_bins) of `log_mel` of one clip's waveform: the audio model's input size."""
  _, step, _ = _stft_sizes(config)
  return -(-num_samples(config) // step), config.num_mel_bins  # pad_end: one frame per step begun.


def log_mel(waveform, config) -> tf.Tensor:
  """Log-mel spectrogram: waveform float32 [..., samples] -> float32 [..., frames, num_mel_bins].

  Magnitude STFT (periodic Hann window, zero-padded at the end so every sample is in a frame), HTK-mel
  triangular filters between fmin and fmax, then log(mel + log_offset).
  """
  length, step, fft_length = _stft_sizes(config)
  stft = tf.signal.stft(tf.cast(waveform, tf.float32), length, step, fft_length, pad_end=True)
  weights = tf.signal.linear_to_mel_weight_matrix(
    config.num_mel_bins, fft_length // 2 + 1, config.sample_rate, config.fmin, config.fmax
  )
  return tf.math.log(tf.tensordot(tf.abs(stft), weights, 1) + config.log_offset)


# The synthetic soundtrack. Shape k's fundamental is BASE_HZ * 2^(PITCH_STEP * k) (220 Hz to 2.5 kHz); a vertical
# motion glides it by up to GLIDE octaves over the whole video, less than PITCH_STEP, so shapes never share a pitch.
BASE_HZ = 220.0
PITCH_STEP = 0.5  # Octaves between neighbouring shapes.
GLIDE = 0.4  # Octaves over the video, for a vertical motion of speed 1.
DETUNE = 0.04  # Octaves: each clip's pitch is off by up to half this either way (a mistuned instrument).

# (shape, weights of harmonics 1..6), in synthetic.SHAPES order (a test checks it; audio does not import synthetic,
# which calls into it). The fundamental is always the loudest partial.
SHAPE_SOUNDS = (
  ("disk", (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)),  # A pure tone.
  ("square", (1.0, 0.0, 1 / 3, 0.0, 1 / 5, 0.0)),  # A square wave's odd harmonics at 1/n.
  ("triangle", (1.0, 0.0, 1 / 9, 0.0, 1 / 25, 0.0)),  # A triangle wave's odd harmonics at 1/n^2.
  ("cross", (1.0, 0.5, 0.0, 0.0, 0.0, 0.0)),  # With its octave.
  ("ring", (1.0, 0.0, 0.0, 0.5, 0.0, 0.3)),  # Hollow: two octaves and a high partial.
  ("bar", (1.0, 0.3, 0.3, 0.3, 0.3, 0.3)),  # Buzzy: every harmonic alike.
  ("star", (1.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6)),  # A sawtooth's harmonics at 1/n: the brightest.
  ("crescent", (1.0, 0.0, 0.5, 0.0, 0.0, 0.0)),  # With its twelfth.
)

# (motion, (glide, fade, tremolo, swell)), in synthetic.MOTIONS order: its (dx, dy, rotation, zoom) heard as
#   glide = -dy: the pitch rises as the shape goes up (GLIDE octaves over the video);
#   fade = dx: a partial a fifth above the fundamental fades in as it goes right, out as it goes left (steady at
#     half its level, FIFTH, without horizontal motion);
#   tremolo = rotation: TREMOLO_HZ pulses of loudness, swelling then cut off when clockwise, struck then dying
#     away when anticlockwise, so the sense of rotation is heard as the pulses' shape;
#   swell = zoom: SWELL_DB louder (growing) or softer (shrinking) over the video.
MOTION_SOUNDS = (
  ("right", (0.0, 1.0, 0.0, 0.0)),
  ("left", (0.0, -1.0, 0.0, 0.0)),
  ("down", (-1.0, 0.0, 0.0, 0.0)),
  ("up", (1.0, 0.0, 0.0, 0.0)),
  ("rotate_cw", (0.0, 0.0, 1.0, 0.0)),
  ("rotate_ccw", (0.0, 0.0, -1.0, 0.0)),
  ("grow", (0.0, 0.0, 0.0, 1.0)),
  ("shrink", (0.0, 0.0, 0.0, -1.0)),
  ("down_right", (-0.7071, 0.7071, 0.0, 0.0)),
  ("up_left", (0.7071, -0.7071, 0.0, 0.0)),
)
FIFTH = 0.6  # The fifth's weight at its loudest (harmonic weights as above).
TREMOLO_HZ = 4.0
TREMOLO_DEPTH = 0.8  # Loudness falls to 1 - depth between pulses.
SWELL_DB = 18.0
GAIN_DB = (-15.0, -3.0)  # Each clip's loudness (its loudest moment, before noise), in dB of full scale.
NOISE_DB = (-50.0, -30.0)  # Std of each clip's white noise, in dB of full scale.


def synthetic_audio(shape_id, motion_id, times, sample_rate: int, seed, num_samples: int) -> tf.Tensor:
  """The synthetic soundtrack of one clip: float32 [num_samples] in [-1, 1], played at sample_rate.

  shape_id, motion_id: int32 scalars as synthetic.SHAPES / MOTIONS index them; times: float [T], the clip's frame
  times in the video, 0 (first frame) to 1 (last); the samples span times' min to max evenly, whatever
  num_samples / sample_rate seconds that is, so clips of one video agree on the pitch at each moment. seed: int64 [2]
  for this clip's loudness, noise, detuning and phases (salted, so render's seed can be passed as it is).
  """
  draws = iter(range(1001, 1064))

  def uniform(shape=(), low=0.0, high=1.0):
    return tf.random.stateless_uniform(shape, seed + next(draws), low, high)

  harmonics = tf.gather(tf.constant([w for _, w in SHAPE_SOUNDS], tf.float32), shape_id)  # [6]
  glide, fade, tremolo, swell = tf.unstack(tf.gather(tf.constant([m for _, m in MOTION_SOUNDS], tf.float32), motion_id))
  steps = tf.range(num_samples, dtype=tf.float32)
  start, end = tf.reduce_min(times), tf.reduce_max(times)
  t = start + (end - start) * steps / max(num_samples - 1, 1)  # [N] the video time of each sample.
  seconds = steps / sample_rate

  octaves = PITCH_STEP * tf.cast(shape_id, tf.float32) + GLIDE * glide * (t - 0.5) + uniform((), -0.5, 0.5) * DETUNE
  pitch = BASE_HZ * 2.0**octaves  # [N] Hz.
  # Phase in cycles, summed in float64: float32 loses a cycle's fraction after ~1e5 cycles.
  cycles = tf.cumsum(tf.cast(pitch, tf.float64) / sample_rate)
  ratios = tf.constant([1, 2, 3, 4, 5, 6, 1.5], tf.float64)  # Six harmonics and the fifth.
  phases = tf.math.floormod(cycles[:, None] * ratios + tf.cast(uniform([7]), tf.float64), 1.0)
  partials = tf.sin(2 * math.pi * tf.cast(phases, tf.float32))  # [N, 7]
  fifth = FIFTH * tf.clip_by_value(0.5 + fade * (t - 0.5), 0.0, 1.0)  # [N]
  weights = tf.concat([tf.broadcast_to(harmonics, [num_samples, 6]), fifth[:, None]], axis=1)
  # Partials above 0.45 * sample_rate would alias to other pitches.
  weights *= tf.cast(pitch[:, None] * tf.cast(ratios, tf.float32) < 0.45 * sample_rate, tf.float32)
  tone = tf.reduce_sum(weights * partials, axis=1) / (tf.reduce_sum(harmonics) + FIFTH)

  ramp = tf.math.floormod(TREMOLO_HZ * seconds + uniform(), 1.0)  # [N] position within each pulse.
  ramp = tf.where(tremolo >= 0, ramp, 1.0 - ramp)
  envelope = 1.0 - TREMOLO_DEPTH * tf.abs(tremolo) * (1.0 - ramp)
  # Loudest (0 dB) at the loud end of the video, so nothing clips.
  envelope *= 10.0 ** (SWELL_DB / 20 * (swell * (t - 0.5) - tf.abs(swell) / 2))
  gain = 10.0 ** (uniform((), *GAIN_DB) / 20)
  noise = 10.0 ** (uniform((), *NOISE_DB) / 20) * tf.random.stateless_normal([num_samples], seed + next(draws))
  return tf.clip_by_value(gain * envelope * tone + noise, -1.0, 1.0)


class BadAudio(DataError):
  """A file whose audio cannot be read; `reason` is a short key for bad_input's counts, as BadVideo's."""

  def __init__(self, path: str, reason: str, detail: str = ""):
    super().__init__(f"cannot read the audio of {path}: {reason}{': ' + detail if detail else ''}")
    self.reason, self.detail = reason, detail


def decode_audio(
  path: str, start_s: float, duration_s: float, sample_rate: int, timeout_s: float = 30.0
) -> tuple[np.ndarray, bool]:
  """The audio of a file from start_s for duration_s seconds, mono, resampled: (float32 [samples], has_audio).

  start_s counts from the first video frame, as video_decode counts frames (from the audio's start in a file
  without video), so audio and frames line up. Samples before the audio begins or after it ends are zeros;
  so is all of a file without an audio stream, with has_audio False. Raises BadAudio (a DataError): "missing",
  "empty", "unreadable" (not a media file, or one that cannot seek), "decode_error" (no audio decodes), "timeout".
  """
  length = int(round(duration_s * sample_rate))
  deadline = time.monotonic() + timeout_s
  container = video_decode.open_container(path, timeout_s, functools.partial(BadAudio, path))
  try:
    if not container.streams.audio:
      return np.zeros(length, np.float32), False
    stream = container.streams.audio[0]
    timeline = container.streams.video[0] if container.streams.video else stream
    start = float((timeline.start_time or 0) * timeline.time_base) + start_s  # On the file's timeline.
    if start_s > 0:
      try:
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
      except Exception as e:
        raise BadAudio(path, "unreadable", f"cannot seek: {video_decode.short_error(e)}") from None
    samples, first = _decode(container, stream, path, start + duration_s, sample_rate, deadline)
  finally:
    container.close()
  # Place the samples on the window's timeline: zeros before the audio begins and after it ends.
  skip = int(round((start - first) * sample_rate))
  samples = samples[skip:] if skip >= 0 else np.concatenate([np.zeros(-skip, np.float32), samples])
  return np.pad(samples[:length], (0, max(length - len(samples), 0))), True


def _decode(container, stream, path: str, end: float, sample_rate: int, deadline: float) -> tuple[np.ndarray, float]:
  """The stream from the current position to `end` (seconds on the file's timeline), mono float32 at sample_rate:
  (samples [n], the time of the first). Stops at the first damaged packet (the cut-off end of a truncated file)
  or decode error, keeping what decoded before it; raises BadAudio if nothing did."""
  resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
  chunks, first, total = [], None, 0
  try:
    for packet in container.demux(stream):
      if time.monotonic() > deadline:
        raise BadAudio(path, "timeout")
      if packet.is_corrupt:
        break
      for frame in packet.decode():  # The empty packet at the end drains the decoder.
        if first is None:
          first = float(frame.time) if frame.time is not None else 0.0
        resampled = [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
        chunks += resampled
        total += sum(c.size for c in resampled)
      if first is not None and first + total / sample_rate >= end:
        break
    chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]  # What the resampler holds.
  except BadAudio:
    raise
  except av.error.ExitError:  # PyAV's interrupt callback ended a blocking read at the time limit.
    raise BadAudio(path, "timeout") from None
  except Exception as e:
    if not chunks:
      raise BadAudio(path, "decode_error", video_decode.short_error(e)) from None
  samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
  return samples, first if first is not None else end
