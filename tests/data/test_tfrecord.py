"""TFRecords: the converter, and the same clips from shards as from the folder they came from."""

import os
import sys

import numpy as np
import pytest

from jvssl import config as config_lib
from jvssl.data import bad_input, pipeline, tfrecord
from jvssl.tools import make_tfrecords

sys.path.insert(0, os.path.dirname(__file__))
from test_video_folder import RUNLOCAL, frame_numbers  # noqa: E402
from videos import truncate_video, write_video  # noqa: E402

LENGTHS = {"a.mp4": 14, "b.mp4": 20, "c.mp4": 9, "d.mp4": 17}


@pytest.fixture(autouse=True)
def _fresh_counts():
  bad_input.reset()
  yield
  bad_input.reset()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """A folder of four mp4s (+ one empty file) with its list, converted into 3 shards."""
  root = tmp_path_factory.mktemp("videos")
  for i, (name, n) in enumerate(LENGTHS.items()):
    write_video(root / name, num_frames=n)
  (root / "empty.mp4").write_bytes(b"")
  lines = [f"{name} {i}" for i, name in enumerate(LENGTHS)]
  (root / "train.txt").write_text("\n".join(lines) + "\n")
  (root / "with_bad.txt").write_text("\n".join(lines[:2] + ["empty.mp4 9"] + lines[2:]) + "\n")
  out = root / "records"
  assert make_tfrecords.main([f"--videos={root}", f"--list={root / 'train.txt'}", f"--out={out}", "--shards=3"]) == 0
  return root, out


def run_config(root, out, source, *overrides):
  return config_lib.load(
    RUNLOCAL,
    [
      f"data.source={source}",
      f"data.video_folder.root={root}",
      f"data.video_folder.train_list={root / 'train.txt'}",
      f"data.tfrecord.train_files={out}/train-*-of-*",
      "data.batch_size=4",
      "data.num_frames=4",
      "data.frame_stride=3",
      "data.num_parallel_calls=2",
      *overrides,
    ],
  )


def batches(config, n):
  it = pipeline.numpy_batches(pipeline.train_dataset(config))
  return [next(it) for _ in range(n)]


def test_tfrecords_give_the_same_clips_as_the_folder(converted):
  root, out = converted
  assert len(tfrecord.shard_files(f"{out}/train-*-of-*")) == 3
  from_folder = batches(run_config(root, out, "video_folder"), 3)
  from_records = batches(run_config(root, out, "tfrecord"), 3)
  for f, r in zip(from_folder, from_records):
    np.testing.assert_array_equal(f["label"], r["label"])
    assert f["video"].shape == r["video"].shape == (4, 4, 32, 32, 3)
    np.testing.assert_array_equal(frame_numbers(f["video"]), frame_numbers(r["video"]))
    assert np.abs(f["video"].astype(int) - r["video"].astype(int)).max() <= 3  # JPEG error only.
  # The comparison means something: clips start at different frames and videos are shuffled.
  starts = {(int(lab), int(clip[0])) for b in from_records for lab, clip in zip(b["label"], frame_numbers(b["video"]))}
  assert len({s for _, s in starts}) > 1 and len({lab for lab, _ in starts}) == 4


def test_header_walk_matches_the_index_and_counts_a_truncated_shard(converted, tmp_path):
  _, out = converted
  shard = tfrecord.shard_files(f"{out}/train-*-of-*")[0]
  copy = tmp_path / "shard"
  data = open(shard, "rb").read()
  copy.write_bytes(data)
  np.testing.assert_array_equal(tfrecord.record_offsets(str(copy)), tfrecord.record_offsets(shard))
  assert tfrecord.main([str(copy)]) == 0  # Writes the missing .index, as the converter would have.
  assert (tmp_path / "shard.index").read_text().split("#")[0] == open(shard + ".index").read().split("#")[0]
  (tmp_path / "shard.index").unlink()
  copy.write_bytes(data[:-10])
  assert len(tfrecord.record_offsets(str(copy))) == len(tfrecord.record_offsets(shard)) - 1
  assert bad_input.skip_counts() == {"truncated_shard": 1}


def test_each_process_reads_only_its_records(converted, monkeypatch):
  root, out = converted
  monkeypatch.setattr(pipeline.jax, "process_count", lambda: 2)
  monkeypatch.setattr(pipeline.jax, "process_index", lambda: 1)
  source = tfrecord.TFRecordSource(run_config(root, out, "tfrecord").data, "train")
  records = source.records
  wanted = {(records.files[records.shard[i]], int(records.offsets[i][0])) for i in (2, 3)}
  # Made first: start-up reads the first records to see whether the data set has captions.
  it = pipeline.numpy_batches(pipeline.train_dataset(run_config(root, out, "tfrecord", "data.shuffle=False")))
  reads = []
  original = tfrecord.read_record
  monkeypatch.setattr(
    tfrecord, "read_record", lambda path, offset, length: reads.append((path, offset)) or original(path, offset, length)
  )
  got = [next(it) for _ in range(2)]
  assert [b["label"].tolist() for b in got] == [[2, 3], [2, 3]]
  assert reads and set(reads) <= wanted


def test_converter_resumes_and_lists_bad_videos(converted, tmp_path):
  root, _ = converted
  out = tmp_path / "out"
  argv = [f"--videos={root}", f"--list={root / 'with_bad.txt'}", f"--out={out}", "--shards=2", "--name=train"]
  assert make_tfrecords.main(argv) == 0
  first, second = (make_tfrecords.shard_path(str(out), "train", i, 2) for i in range(2))
  assert (out / "train.bad_videos.tsv").read_text() == f"{root / 'empty.mp4'}\tempty\n"
  stamp = os.stat(first).st_mtime_ns
  os.remove(second)
  assert make_tfrecords.main(argv) == 0
  assert os.path.exists(second) and os.stat(first).st_mtime_ns == stamp  # Only the missing shard was redone.
  assert (out / "train.bad_videos.tsv").read_text() == f"{root / 'empty.mp4'}\tempty\n"
  assert not [f for f in os.listdir(out) if ".tmp" in f]
  source = tfrecord.TFRecordSource(run_config(root, out, "tfrecord").data, "train")
  assert source.num_examples == 4  # The empty file was left out.


def test_a_truncated_video_is_the_frames_it_holds_in_both_sources(tmp_path, capsys):
  # An mp4 cut short, as a download stopped part-way: its headers promise 132 frames, its data holds 47.
  truncate_video(write_video(tmp_path / "cut.mp4", num_frames=132, faststart=True), 47)
  (tmp_path / "train.txt").write_text("cut.mp4 5\n")
  out = tmp_path / "records"
  argv = [f"--videos={tmp_path}", f"--list={tmp_path / 'train.txt'}", f"--out={out}", "--shards=1"]
  assert make_tfrecords.main(argv) == 0
  note = "truncated: header 132 frames, decoded 47"
  assert (out / "train.bad_videos.tsv").read_text() == f"{tmp_path / 'cut.mp4'}\t{note}\n"
  assert "1 videos written (1 of them truncated" in capsys.readouterr().err
  records = tfrecord.RecordIndex(tfrecord.shard_files(f"{out}/train-*"))
  assert len(tfrecord.sequence_example_frames(records.read(0))[0]) == 47
  from_folder = batches(run_config(tmp_path, out, "video_folder"), 2)
  from_records = batches(run_config(tmp_path, out, "tfrecord"), 2)
  for f, r in zip(from_folder, from_records):
    np.testing.assert_array_equal(frame_numbers(f["video"]), frame_numbers(r["video"]))
  assert bad_input.skip_counts() == {} and bad_input.repair_counts()["truncated"] >= 2


def test_resampling_and_short_side(converted, tmp_path):
  root, _ = converted
  out = tmp_path / "out"
  assert (
    make_tfrecords.main(
      [f"--videos={root}", f"--list={root / 'train.txt'}", f"--out={out}", "--shards=1", "--fps=5", "--short_side=16"]
    )
    == 0
  )
  import tensorflow as tf

  record = next(iter(tf.data.TFRecordDataset(tfrecord.shard_files(f"{out}/train-*")[:1])))
  _, lists = tf.io.parse_single_sequence_example(
    record, sequence_features={tfrecord.FRAMES_KEY: tf.io.FixedLenSequenceFeature([], tf.string)}
  )
  frames = [tf.io.decode_jpeg(j).numpy() for j in lists[tfrecord.FRAMES_KEY]]
  assert len(frames) == LENGTHS["a.mp4"] // 2 and frames[0].shape[:2] == (16, 20)  # 10 fps -> 5 fps; 32x40 -> 16x20.
  np.testing.assert_array_equal(frame_numbers(np.stack(frames)), np.arange(0, LENGTHS["a.mp4"] - 1, 2))


def test_unparsable_records_and_damaged_frames_are_skipped_and_counted(tmp_path):
  import tensorflow as tf

  frames = np.stack([np.full((32, 40, 3), 100, np.uint8)] * 12)
  good = [make_tfrecords.serialize(frames, label, f"v{label}", 90) for label in (0, 3)]
  damaged = tf.train.SequenceExample.FromString(make_tfrecords.serialize(frames, 1, "v1", 90))
  for feature in damaged.feature_lists.feature_list[tfrecord.FRAMES_KEY].feature:
    feature.bytes_list.value[0] = feature.bytes_list.value[0][:200]  # Cut off, as in a truncated download.
  with tf.io.TFRecordWriter(str(tmp_path / "s-00000-of-00001")) as writer:
    for record in (good[0], damaged.SerializeToString(), b"\xff\xff\xff\xff not a proto", good[1]):
      writer.write(record)
  c = run_config(
    tmp_path,
    tmp_path,
    "tfrecord",
    "data.shuffle=False",
    "data.max_bad_fraction=0.9",
    f"data.tfrecord.train_files={tmp_path}/s-*",
  )
  batch = batches(c, 1)[0]
  assert batch["label"][0] == 0 and batch["label"][3] == 3 and set(batch["label"][1:3]) <= {0, 3}
  counts = bad_input.skip_counts()
  assert counts.get("damaged_frame", 0) >= 1 and counts.get("unparsable", 0) >= 1


def test_csv_windows_convert_to_the_same_clips(converted, tmp_path):
  root, _ = converted
  (root / "windows.csv").write_text("path,label,start,end\nb.mp4,1,0.5,1.6\nd.mp4,3,0.7,0\n")
  out = tmp_path / "out"
  assert make_tfrecords.main([f"--videos={root}", f"--list={root / 'windows.csv'}", f"--out={out}", "--shards=1"]) == 0
  overrides = (f"data.video_folder.train_list={root / 'windows.csv'}", f"data.tfrecord.train_files={out}/windows-*")
  from_folder = batches(run_config(root, out, "video_folder", *overrides), 2)
  from_records = batches(run_config(root, out, "tfrecord", *overrides), 2)
  for f, r in zip(from_folder, from_records):
    np.testing.assert_array_equal(f["label"], r["label"])
    np.testing.assert_array_equal(frame_numbers(f["video"]), frame_numbers(r["video"]))
  frames = np.concatenate([frame_numbers(b["video"]) for b in from_records])
  labels = np.concatenate([b["label"] for b in from_records])
  assert frames[labels == 1].min() >= 5 and frames[labels == 1].max() <= 15  # b.mp4 from 0.5 s to 1.6 s at 10 fps.
  assert frames[labels == 3].min() >= 7


def test_eval_reads_every_record_once_in_order(converted):
  root, out = converted
  ds, n = pipeline.eval_dataset(run_config(root, out, "tfrecord"), "train", batch_size=4)
  batch = next(pipeline.numpy_batches(ds))
  assert n == 4 and batch["label"].tolist() == [0, 1, 2, 3] and batch["mask"].tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("frame_format", ["stored", "png"])
def test_lossless_frame_formats_keep_the_pixels(tmp_path, frame_format):
  import tensorflow as tf

  frames = np.random.default_rng(0).integers(0, 256, (12, 32, 40, 3), dtype=np.uint8)
  record = make_tfrecords.serialize(frames, 2, "v", 90, frame_format=frame_format)
  with tf.io.TFRecordWriter(str(tmp_path / "s-00000-of-00001")) as writer:
    writer.write(record)
  c = run_config(tmp_path, tmp_path, "tfrecord", f"data.tfrecord.train_files={tmp_path}/s-*")
  source = pipeline.make_source(c.data, "train")
  video = source.load(tf.constant(0, tf.int64), tf.constant([1, 2], tf.int64))["video"].numpy()
  start = int(np.argmax([np.array_equal(frames[i], video[0]) for i in range(12)]))
  np.testing.assert_array_equal(video, frames[start : start + 3 * len(video) : 3])  # data.frame_stride=3.
  if frame_format == "stored":  # Every pixel's bytes are in the record, uncompressed.
    assert len(record) > frames.nbytes
