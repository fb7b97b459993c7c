"""Audio: the synthetic soundtrack follows shape and motion, log-mel against a numpy reference, and decoding the
audio track of real containers (AAC in mp4, PCM in mkv), silent and corrupt files."""

import os
import sys

import av
import numpy as np
import pytest
import tensorflow as tf

from jvssl.data import audio, synthetic
from jvssl.errors import DataError

sys.path.insert(0, os.path.dirname(__file__))
from videos import write_video  # noqa: E402

RATE = 16000
NAMES = {name: i for i, (name, _) in enumerate(synthetic.MOTIONS)}


def soundtrack(shape: int, motion: int, seed=(3, 4), seconds: float = 1.0, times=None) -> np.ndarray:
  times = tf.linspace(0.0, 1.0, 8) if times is None else tf.constant(times, tf.float32)
  wave = audio.synthetic_audio(
    tf.constant(shape), tf.constant(motion), times, RATE, tf.constant(seed, tf.int64), int(seconds * RATE)
  )
  return wave.numpy()


def dominant_hz(x: np.ndarray) -> float:
  spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 8 * len(x)))  # Zero-padded: a finer frequency grid.
  return float(np.fft.rfftfreq(8 * len(x), 1 / RATE)[spectrum.argmax()])


def test_tables_follow_the_synthetic_sets_order():
  assert [name for name, _ in audio.SHAPE_SOUNDS] == list(synthetic.SHAPES)
  assert [name for name, _ in audio.MOTION_SOUNDS] == [name for name, _ in synthetic.MOTIONS]
  for (_, (dx, dy, rotation, zoom)), (_, sound) in zip(synthetic.MOTIONS, audio.MOTION_SOUNDS):
    assert sound == (-dy, dx, rotation, zoom)


def test_deterministic_per_seed_and_inside_tf_data():
  a, b = soundtrack(3, 4, seed=(1, 2)), soundtrack(3, 4, seed=(1, 2))
  np.testing.assert_array_equal(a, b)
  assert a.dtype == np.float32 and a.shape == (RATE,) and np.abs(a).max() <= 1.0
  assert not np.allclose(a, soundtrack(3, 4, seed=(1, 3)), atol=1e-3)
  ds = tf.data.Dataset.range(2).map(
    lambda i: audio.synthetic_audio(
      tf.cast(i, tf.int32), tf.constant(4), tf.linspace(0.0, 1.0, 8), RATE, tf.stack([i, i + 1]), 1000
    )
  )
  assert [w.shape for w in ds.as_numpy_iterator()] == [(1000,), (1000,)]


def test_each_shape_has_its_own_pitch():
  # Without vertical motion the pitch holds at the shape's, detuned by at most DETUNE / 2 octaves.
  pitches = [dominant_hz(soundtrack(shape, NAMES["right"], seed=(shape, 9))) for shape in range(8)]
  expected = audio.BASE_HZ * 2.0 ** (audio.PITCH_STEP * np.arange(8))
  assert np.all(np.abs(np.log2(np.array(pitches) / expected)) <= audio.DETUNE / 2 + 0.01)
  assert np.all(np.diff(np.log2(pitches)) > audio.PITCH_STEP - audio.DETUNE - 0.02)


def test_motion_is_heard():
  quarter = RATE // 4
  first, last = slice(0, quarter), slice(-quarter, None)
  rms = lambda x: float(np.sqrt(np.mean(x**2)))
  up, down = soundtrack(2, NAMES["up"]), soundtrack(2, NAMES["down"])
  assert dominant_hz(up[last]) > 1.1 * dominant_hz(up[first])
  assert dominant_hz(down[last]) < dominant_hz(down[first]) / 1.1
  grow, shrink = soundtrack(0, NAMES["grow"]), soundtrack(0, NAMES["shrink"])
  assert rms(grow[last]) > 3 * rms(grow[first]) and rms(shrink[first]) > 3 * rms(shrink[last])

  def fifth_level(x):  # The spectrum's magnitude at 1.5 times the pitch, relative to the pitch's.
    pitch = dominant_hz(x)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    at = lambda hz: spectrum[int(round(hz * len(x) / RATE)) + np.arange(-2, 3)].max()
    return at(1.5 * pitch) / at(pitch)

  right, left = soundtrack(0, NAMES["right"]), soundtrack(0, NAMES["left"])
  assert fifth_level(right[last]) > 2 * fifth_level(right[first])
  assert fifth_level(left[first]) > 2 * fifth_level(left[last])

  # Clockwise pulses swell and are cut off; anticlockwise ones are struck and die away: the loudness envelope's
  # steepest step is a fall, or a rise.
  def steepest_rise_over_fall(x):
    slope = np.diff(np.sqrt(np.mean(x.reshape(-1, 160) ** 2, axis=1)))  # RMS in 10 ms blocks.
    return slope.max() / -slope.min()

  assert steepest_rise_over_fall(soundtrack(0, NAMES["rotate_cw"])) < 0.4
  assert steepest_rise_over_fall(soundtrack(0, NAMES["rotate_ccw"])) > 2.5
  assert 0.5 < steepest_rise_over_fall(soundtrack(0, NAMES["right"])) < 2


def test_clips_of_one_video_agree_on_the_pitch_at_each_moment():
  whole = soundtrack(4, NAMES["up"], seconds=2.0)
  second_half = soundtrack(4, NAMES["up"], seconds=1.0, times=[0.5, 0.75, 1.0])
  np.testing.assert_allclose(dominant_hz(second_half[-2000:]), dominant_hz(whole[-2000:]), rtol=0.01)


def reference_log_mel(x: np.ndarray, config) -> np.ndarray:
  """log-mel by hand: periodic Hann frames of 25 ms every 10 ms (zero-padded end), |rfft| in 512 bins, HTK-mel
  triangles from fmin to fmax (the DC bin left out, as TensorFlow does)."""
  length, step, fft = 400, 160, 512
  count = -(-len(x) // step)
  padded = np.pad(x, (0, (count - 1) * step + length - len(x)))
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)
  frames = np.stack([padded[i * step : i * step + length] * window for i in range(count)])
  magnitude = np.abs(np.fft.rfft(frames, fft))
  mel = lambda hz: 1127.0 * np.log1p(np.asarray(hz) / 700.0)
  edges = np.linspace(mel(config.fmin), mel(config.fmax), config.num_mel_bins + 2)
  bins = mel(np.linspace(0, RATE / 2, fft // 2 + 1))[:, None]
  rising = (bins - edges[:-2]) / (edges[1:-1] - edges[:-2])
  falling = (edges[2:] - bins) / (edges[2:] - edges[1:-1])
  weights = np.maximum(0, np.minimum(rising, falling))
  weights[0] = 0
  return np.log(magnitude @ weights + config.log_offset)


def test_log_mel_matches_a_reference_and_puts_a_tone_in_its_bin():
  config = audio.default_config()
  edges = np.linspace(*(1127.0 * np.log1p(np.array([config.fmin, config.fmax]) / 700.0)), config.num_mel_bins + 2)
  hz = 700.0 * np.expm1(edges[21] / 1127.0)  # The centre of mel bin 20.
  tone = (0.3 * np.sin(2 * np.pi * hz * np.arange(RATE // 2) / RATE)).astype(np.float32)
  spec = audio.log_mel(tone, config).numpy()
  assert spec.shape == (50, config.num_mel_bins) and spec.dtype == np.float32
  assert spec[2:-3].mean(axis=0).argmax() == 20  # Away from the zero-padded end.
  np.testing.assert_allclose(spec, reference_log_mel(tone, config), atol=2e-3)
  batched = audio.log_mel(np.stack([tone, tone[::-1]]), config).numpy()
  assert batched.shape == (2, 50, config.num_mel_bins)
  np.testing.assert_allclose(batched[0], spec, atol=1e-5)


def test_spectrogram_shape_is_log_mels():
  config = audio.default_config()
  wave = soundtrack(0, 0, seconds=config.seconds)
  assert audio.spectrogram_shape(config) == audio.log_mel(wave, config).shape == (256, 64)


def write_media(path, codec: str, tone_hz: float = 1000.0, tone_from_s: float = 0.5, seconds: float = 2.0) -> str:
  """A 10 fps grey video with a stereo 44.1 kHz track: silence, then a tone from tone_from_s on."""
  rate, fps = 44100, 10
  with av.open(str(path), "w") as out:
    video = out.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
    sound = out.add_stream(codec, rate=rate)
    sound.layout = "stereo"
    t = np.arange(int(seconds * rate)) / rate
    wave = np.where(t >= tone_from_s, 0.5 * np.sin(2 * np.pi * tone_hz * t), 0.0).astype(np.float32)
    for i in range(0, len(wave), 1024):
      frame = av.AudioFrame.from_ndarray(np.stack([wave[i : i + 1024]] * 2), format="fltp", layout="stereo")
      frame.sample_rate, frame.pts = rate, i
      out.mux(sound.encode(frame))
    out.mux(sound.encode())
    for _ in range(int(seconds * fps)):
      out.mux(video.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 100, np.uint8), format="rgb24")))
    out.mux(video.encode())
  return str(path)


@pytest.mark.parametrize("name,codec", [("aac.mp4", "aac"), ("pcm.mkv", "pcm_s16le")])
def test_decode_recovers_the_tone_and_its_timing(tmp_path, name, codec):
  path = write_media(tmp_path / name, codec)
  samples, has_audio = audio.decode_audio(path, 0.25, 1.0, RATE)
  assert has_audio and samples.dtype == np.float32 and samples.shape == (RATE,)
  onset = np.argmax(np.abs(samples) > 0.1)  # The tone starts 0.25 s into the window.
  assert abs(onset - RATE // 4) <= 16
  assert abs(dominant_hz(samples[RATE // 2 :]) - 1000.0) < 2.0
  # Before the start of the file (a window centred on an early clip) and past its end: zeros.
  early, _ = audio.decode_audio(path, -0.25, 1.0, RATE)
  assert abs(np.argmax(np.abs(early) > 0.1) - 3 * RATE // 4) <= 16
  tail, _ = audio.decode_audio(path, 1.5, 1.0, RATE)
  assert np.abs(tail[: int(0.45 * RATE)]).max() > 0.3 and not tail[int(0.55 * RATE) :].any()


def test_no_audio_stream_is_zeros_and_a_flag(tmp_path):
  samples, has_audio = audio.decode_audio(write_video(tmp_path / "silent.mp4"), 0.0, 0.5, RATE)
  assert not has_audio and samples.shape == (RATE // 2,) and not samples.any()


def test_bad_files_raise_one_line_data_errors(tmp_path):
  (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
  (tmp_path / "empty.mp4").write_bytes(b"")
  for name, reason in [("noise.mp4", "unreadable"), ("empty.mp4", "empty"), ("missing.mp4", "missing")]:
    with pytest.raises(DataError) as error:
      audio.decode_audio(str(tmp_path / name), 0.0, 1.0, RATE)
    assert error.value.reason == reason and "\n" not in str(error.value) and name in str(error.value)
