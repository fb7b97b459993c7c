"""Near-duplicate retrieval: the synthetic copies are near-duplicates that a plain colour descriptor finds, the
benchmark is a function of its seed, and the mAP pipeline scores a ranking as FIVR's evaluation does."""

import numpy as np
import pytest

from jvssl.data import synthetic_tasks
from jvssl.evaluate import near_duplicate

VIDEOS = synthetic_tasks.SegmentationVideos(length=16, size=32, seed=5)
BENCHMARK = synthetic_tasks.NearDuplicates(VIDEOS, copies=2)


def _colour_clips(video):
  """[V, 16, S, S, 3] -> per-clip descriptors [V, 4, 48]: each 4-frame clip's mean colour in a 4x4 grid."""
  v = video.astype(np.float32).reshape(video.shape[0], 4, 4, 4, 8, 4, 8, 3)
  return v.mean(axis=(2, 4, 6)).reshape(video.shape[0], 4, -1)


@pytest.fixture(scope="module")
def built():
  return BENCHMARK.build(num_queries=6, num_distractors=10)


def test_database_holds_each_querys_copies_among_distractors(built):
  queries, database, query_ids, database_ids, positives = built
  assert queries.shape == (6, 16, 32, 32, 3) and database.shape == (22, 16, 32, 32, 3)
  assert sorted(positives["q0"]) == ["q0_copy0", "q0_copy1"] and len(set(database_ids)) == 22
  assert database_ids != sorted(database_ids, key=lambda i: (not i.startswith("q"), i))  # Shuffled.
  copy = database[database_ids.index("q0_copy0")]
  assert copy.dtype == np.uint8 and not np.array_equal(copy, queries[0])
  # Re-timed, cropped and re-encoded, but still its query's colours.
  assert np.abs(copy.astype(float).mean((0, 1, 2)) - queries[0].astype(float).mean((0, 1, 2))).max() < 25


def test_the_benchmark_is_a_function_of_its_seed(built):
  again = BENCHMARK.build(num_queries=6, num_distractors=10)
  for a, b in zip(built, again):
    assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b


def test_a_colour_descriptor_finds_the_copies_and_a_wrong_truth_does_not(built):
  queries, database, query_ids, database_ids, positives = built
  q, d = _colour_clips(queries), _colour_clips(database)
  found = near_duplicate.retrieval_map(q, d, query_ids, database_ids, positives, "chamfer")
  assert found > 0.9, found
  # The same similarities against a truth that pairs each query with another query's copies.
  wrong = {f"q{i}": positives[f"q{(i + 1) % 6}"] for i in range(6)}
  assert near_duplicate.retrieval_map(q, d, query_ids, database_ids, wrong, "chamfer") < 0.5


def _write(path, colour, size=(48, 64), num_frames=20, seed=0):
  """An mp4 of a `colour` background with a moving darker square (so the codec has something to encode)."""
  import av

  rng = np.random.default_rng(seed)
  height, width = size
  with av.open(str(path), "w") as out:
    stream = out.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for i in range(num_frames):
      image = np.full((height, width, 3), colour, np.uint8)
      image[10 + i % 8 : 26 + i % 8, 10 + i : 26 + i] //= 2
      image = np.clip(image.astype(int) + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
        out.mux(packet)
    for packet in stream.encode():
      out.mux(packet)


def test_fivr_layout_files_are_read_decoded_and_ranked(tmp_path, caplog):
  import json

  import jax.numpy as jnp

  from jvssl import config as config_lib, sharding

  from conftest import REPO

  colours = {"qa": (200, 40, 40), "qb": (40, 200, 40), "d1": (40, 40, 200), "d2": (200, 200, 40)}
  for name, colour in colours.items():
    _write(tmp_path / f"{name}.mp4", colour, seed=len(name))
  # The copies: other sizes (scaled and cropped differently), a little brighter, other noise.
  _write(tmp_path / "qa_copy.mp4", (210, 50, 50), size=(40, 56), seed=7)
  _write(tmp_path / "qb_copy.mp4", (50, 210, 50), size=(64, 80), seed=8)
  (tmp_path / "broken.mp4").write_bytes(b"not a video")
  names = ["qa", "d1", "qb_copy", "broken", "qb", "qa_copy", "d2"]
  (tmp_path / "list.txt").write_text("".join(f"{n}.mp4\n" for n in names))
  (tmp_path / "annotation.json").write_text(json.dumps({"qa": {"ND": ["qa_copy"]}, "qb": {"DS": ["qb_copy"]}}))

  config = config_lib.load(f"{REPO}/configs/videomae_synthetic.py:runlocal")
  cfg = near_duplicate.NearDuplicate.default_config()
  cfg.benchmark, cfg.annotations, cfg.fivr_task = "fivr", str(tmp_path / "annotation.json"), "DSVR"
  cfg.video_list, cfg.video_root, cfg.fps, cfg.max_clips = str(tmp_path / "list.txt"), str(tmp_path), 5.0, 3
  mesh = sharding.make_mesh(config.mesh)
  # A colour descriptor stands in for an encoder: each clip's mean colour.
  mean_colour = lambda batch: jnp.mean(batch["video"].astype(jnp.float32), axis=(1, 2, 3))
  with caplog.at_level("WARNING", logger="jvssl"):
    result = near_duplicate.real_benchmark_map(config, cfg, mesh, mean_colour)
  assert result == {"mAP": 1.0, "num_queries": 2, "skipped_videos": 1}
  assert "broken.mp4" in caplog.text
  # 2 s of video: at 5 fps 10 frames hold 2 clips of 4; at 10 fps 20 frames hold 5, of which max_clips 3 are read.
  assert near_duplicate.file_clips(str(tmp_path / "qa.mp4"), 4, 32, 5.0, 3).shape == (2, 4, 32, 32, 3)
  clips = near_duplicate.file_clips(str(tmp_path / "qa.mp4"), 4, 32, 10.0, 3)
  assert clips.shape == (3, 4, 32, 32, 3) and clips.dtype == np.uint8
