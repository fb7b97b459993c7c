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
