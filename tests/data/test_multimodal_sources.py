"""Captions and audio from files: the list's caption column, DMVR's caption/string and WAVEFORM through the
converter and the TFRecord source, and each clip's soundtrack cut at the clip's own time."""

import os
import sys

import av
import numpy as np
import pytest
import tensorflow as tf

from jvssl.data import audio, bad_input, pipeline, tfrecord, video_folder
from jvssl.errors import ConfigError
from jvssl.tools import make_tfrecords

sys.path.insert(0, os.path.dirname(__file__))
from test_video_folder import folder_config, frame_numbers  # noqa: E402
from videos import frame_value, write_video  # noqa: E402

RATE = 16000
FPS = 10
NUM_FRAMES = 18  # frame_numbers tells frames apart up to 18.
TONE_HZ = 1000.0
TONE_FROM_S = 0.9  # Silence before, a tone after: where it starts in a window shows where the window is.
SECONDS = 0.6  # Audio per clip in these tests.
# 4 frames at stride 2 of 18 at 10 fps: clip middles 0.3 s to 1.4 s, so windows hold silence, tone or both.
CLIPS = ("data.num_frames=4", "data.frame_stride=2", "data.audio.enabled=True", f"data.audio.seconds={SECONDS}")


@pytest.fixture(autouse=True)
def _fresh_counts():
  bad_input.reset()
  yield
  bad_input.reset()


def tone(seconds: float, rate: int) -> np.ndarray:
  t = np.arange(int(round(seconds * rate))) / rate
  return np.where(t >= TONE_FROM_S, 0.5 * np.sin(2 * np.pi * TONE_HZ * t), 0.0).astype(np.float32)


def write_with_tone(path) -> str:
  """write_video's numbered grey frames at FPS, with a stereo 44.1 kHz AAC track of `tone`, as an mp4."""
  rate = 44100
  wave = tone(NUM_FRAMES / FPS, rate)
  with av.open(str(path), "w") as out:
    video = out.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
    sound = out.add_stream("aac", rate=rate)
    sound.layout = "stereo"
    for i in range(0, len(wave), 1024):
      frame = av.AudioFrame.from_ndarray(np.stack([wave[i : i + 1024]] * 2), format="fltp", layout="stereo")
      frame.sample_rate, frame.pts = rate, i
      out.mux(sound.encode(frame))
    out.mux(sound.encode())
    for i in range(NUM_FRAMES):
      image = np.full((32, 32, 3), frame_value(i), np.uint8)
      out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
    out.mux(video.encode())
  return str(path)


def dominant_hz(x: np.ndarray) -> float:
  spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 8 * len(x)))
  return float(np.fft.rfftfreq(8 * len(x), 1 / RATE)[spectrum.argmax()])


def check_window(wave: np.ndarray, frames: np.ndarray) -> str:
  """wave: the audio of the clip showing `frames` (write_video frame numbers [T]): SECONDS of `tone` centred on
  the middle of the clip's first and last frame times. Returns what the window holds: silence, onset or tone."""
  assert wave.shape == (int(SECONDS * RATE),) and wave.dtype == np.float32
  centre = (frames[0] + frames[-1]) / 2 / FPS
  onset = int(round((TONE_FROM_S - (centre - SECONDS / 2)) * RATE))  # Where the tone starts in the window.
  loud = np.abs(wave) > 0.1
  if onset >= len(wave):
    assert not loud.any()
    return "silence"
  assert abs(loud.argmax() - max(onset, 0)) <= 16, (loud.argmax(), onset)
  if len(wave) - onset > RATE // 10:
    assert abs(dominant_hz(wave[max(onset, 0) + 160 :]) - TONE_HZ) < 10
  return "onset" if onset > 0 else "tone"


def load(source, index: int, seed: int) -> dict:
  return {k: v.numpy() for k, v in source.load(tf.constant(index, tf.int64), tf.constant([seed, 5], tf.int64)).items()}


def test_caption_column_gathers_each_videos_rows(tmp_path):
  listing = 'path,label,caption\na.mp4,1,a man sings\nb.mp4,2,\na.mp4,1,"someone sings, loudly"\n'
  (tmp_path / "l.csv").write_text(listing)
  entries = video_folder.read_list(str(tmp_path / "l.csv"), "r")
  assert entries == [
    video_folder.Entry("r/a.mp4", 1, captions=("a man sings", "someone sings, loudly")),
    video_folder.Entry("r/b.mp4", 2),
  ]
  (tmp_path / "bad.csv").write_text("path,label,caption\na.mp4,1,x\na.mp4,2,y\n")
  with pytest.raises(ConfigError, match="rows of a.mp4 give labels 1 and 2"):
    video_folder.read_list(str(tmp_path / "bad.csv"), "r")
  (tmp_path / "plain.csv").write_text("path,label\na.mp4,1\na.mp4,1\n")  # Without captions a row is a video.
  assert len(video_folder.read_list(str(tmp_path / "plain.csv"), "r")) == 2

  for name in ("a.mp4", "b.mp4"):
    write_video(tmp_path / name, num_frames=8)
  source = video_folder.VideoFolderSource(folder_config(str(tmp_path), listing).data, "train")
  assert load(source, 0, 1)["caption"].tolist() == [b"a man sings", b"someone sings, loudly"]
  assert load(source, 1, 1)["caption"].shape == (0,)
  # The pipeline turns them into token ids, the empty caption for b.mp4.
  batch = next(
    pipeline.numpy_batches(pipeline.train_dataset(folder_config(str(tmp_path), listing, "data.batch_size=2")))
  )
  assert batch["text"].shape == (2, 32) and "caption" not in batch
  # A list without captions gives none, so a method that needs text is told at start-up.
  plain = video_folder.VideoFolderSource(folder_config(str(tmp_path), "a.mp4 1\n").data, "train")
  assert "caption" not in load(plain, 0, 1)


def test_video_folder_cuts_each_clips_audio_at_its_time(tmp_path):
  write_with_tone(tmp_path / "tone.mp4")
  c = folder_config(str(tmp_path), "tone.mp4 0\n", *CLIPS, "data.clips_per_video=2")
  source = video_folder.VideoFolderSource(c.data, "train")
  seen = set()
  for seed in range(6):
    example = load(source, 0, seed)
    assert example["audio"].shape == (2, int(SECONDS * RATE)) and example["has_audio"] == 1
    seen |= {check_window(wave, clip) for clip, wave in zip(frame_numbers(example["video"]), example["audio"])}
  assert len(seen) >= 2  # Clips at different times got different audio.
  assert bad_input.repair_counts() == {} and bad_input.skip_counts() == {}
  # Through the pipeline the waveform becomes its log-mel spectrogram.
  c = folder_config(str(tmp_path), "tone.mp4 0\n", *CLIPS, "data.batch_size=2")
  batch = next(pipeline.numpy_batches(pipeline.train_dataset(c)))
  assert batch["audio"].shape == (2, *audio.spectrogram_shape(c.data.audio))
  assert (batch["has_audio"] == 1).all()


def test_no_audio_track_or_unreadable_audio_is_zeros_and_counted(tmp_path, monkeypatch):
  write_video(tmp_path / "silent.mp4", num_frames=NUM_FRAMES)
  source = video_folder.VideoFolderSource(folder_config(str(tmp_path), "silent.mp4 3\n", *CLIPS).data, "train")
  example = load(source, 0, 1)
  assert example["audio"].shape == (int(SECONDS * RATE),) and not example["audio"].any()
  assert example["has_audio"] == 0 and example["bad"] == 0 and example["label"] == 3
  assert bad_input.repair_counts() == {"no_audio": 1} and bad_input.skip_counts() == {}

  def broken(path, *args, **kwargs):
    raise audio.BadAudio(path, "decode_error", "Invalid data")

  monkeypatch.setattr(audio, "decode_audio", broken)
  example = load(source, 0, 1)
  assert example["has_audio"] == 0 and not example["audio"].any() and example["video"].shape[0] == 4
  assert bad_input.repair_counts() == {"no_audio": 1, "audio_decode_error": 1} and bad_input.skip_counts() == {}


def test_converter_writes_dmvr_captions_and_audio_that_the_tfrecord_source_reads(tmp_path):
  write_with_tone(tmp_path / "tone.mp4")
  write_video(tmp_path / "silent.mp4", num_frames=NUM_FRAMES)
  (tmp_path / "train.csv").write_text(
    'path,label,caption\ntone.mp4,0,a beep\nsilent.mp4,1,"grey, quiet"\ntone.mp4,0,a high tone\n'
  )
  out = tmp_path / "records"
  argv = [f"--videos={tmp_path}", f"--list={tmp_path / 'train.csv'}", f"--out={out}", "--shards=1", "--audio"]
  assert make_tfrecords.main(argv) == 0
  records = tfrecord.RecordIndex(tfrecord.shard_files(f"{out}/train-*"))
  tone_record, silent_record = (tf.train.SequenceExample.FromString(records.read(i)) for i in range(2))
  assert tone_record.context.feature[tfrecord.CAPTION_KEY].bytes_list.value == [b"a beep", b"a high tone"]
  assert tone_record.context.feature[tfrecord.AUDIO_RATE_KEY].float_list.value == [RATE]
  assert tone_record.context.feature[tfrecord.FRAME_RATE_KEY].float_list.value == [FPS]
  stored = tone_record.feature_lists.feature_list[tfrecord.AUDIO_KEY].feature
  assert len(stored) == 1 and len(stored[0].float_list.value) == NUM_FRAMES / FPS * RATE
  assert tfrecord.AUDIO_KEY not in silent_record.feature_lists.feature_list  # No track: no waveform.

  overrides = (
    *CLIPS,
    "data.source=tfrecord",
    f"data.tfrecord.train_files={out}/train-*",
    f"data.video_folder.train_list={tmp_path / 'train.csv'}",
  )
  from_records = tfrecord.TFRecordSource(folder_config(str(tmp_path), "", *overrides).data, "train")
  from_folder = video_folder.VideoFolderSource(from_records.data, "train")
  assert load(from_records, 1, 1)["caption"].tolist() == [b"grey, quiet"]
  for seed in range(4):
    record, folder = load(from_records, 0, seed), load(from_folder, 0, seed)
    assert record["caption"].tolist() == folder["caption"].tolist() == [b"a beep", b"a high tone"]
    np.testing.assert_array_equal(frame_numbers(record["video"]), frame_numbers(folder["video"]))
    check_window(record["audio"], frame_numbers(record["video"]))
    assert record["has_audio"] == 1
  silent = load(from_records, 1, 1)
  assert silent["has_audio"] == 0 and not silent["audio"].any()
  assert bad_input.repair_counts() == {"no_audio": 2}  # Two loads of the silent video.


def test_dmvr_records_from_elsewhere_are_resampled_and_timed_by_their_length(tmp_path):
  # As DMVR's generate_from_file.py writes them: a 48 kHz waveform, neither its rate nor the frame rate stored.
  frames = np.stack([np.full((16, 16, 3), frame_value(i), np.uint8) for i in range(NUM_FRAMES)])
  record = tf.train.SequenceExample.FromString(
    make_tfrecords.serialize(
      frames, 2, "v", 95, captions=["a tone"], sound=tone(NUM_FRAMES / FPS, 48000), audio_rate=48000
    )
  )
  del record.context.feature[tfrecord.AUDIO_RATE_KEY]
  with tf.io.TFRecordWriter(str(tmp_path / "dmvr-00000-of-00001")) as writer:
    writer.write(record.SerializeToString())
  c = folder_config(str(tmp_path), "", *CLIPS, "data.source=tfrecord", f"data.tfrecord.train_files={tmp_path}/dmvr-*")
  source = tfrecord.TFRecordSource(c.data, "train")
  for seed in range(4):
    example = load(source, 0, seed)
    check_window(example["audio"], frame_numbers(example["video"]))
    assert example["caption"].tolist() == [b"a tone"]
