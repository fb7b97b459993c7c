import numpy as np
import pytest
from ml_collections import ConfigDict

from jvssl import config as config_lib, registry
from jvssl.evaluate import paired_retrieval
from jvssl.evaluate.paired_retrieval import retrieval_metrics, retrieval_ranks


def test_perfect_match():
  x = np.random.default_rng(0).normal(size=(20, 8))
  # Scale does not matter: similarity is cosine.
  assert retrieval_metrics(x, 3.0 * x) == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "median_rank": 1.0}


def test_shifted_pairing():
  # Query i is e_i, its match e_{i+1}: e_i (the gallery item of example i - 1) beats it, the rest score 0.
  query = np.eye(6)
  gallery = np.roll(query, -1, axis=0)
  np.testing.assert_array_equal(retrieval_ranks(query, gallery), [2] * 6)
  assert retrieval_metrics(query, gallery) == {"recall@1": 0.0, "recall@5": 1.0, "recall@10": 1.0, "median_rank": 2.0}


def test_ranks_of_a_known_score_matrix():
  # With the identity as gallery the similarities are the query rows (normalised), so each row is
  # a permutation of the scores 1..12 with its own at 13 - rank.
  want = np.array([1, 1, 2, 3, 5, 6, 10, 11, 12, 1, 4, 7])
  n = len(want)
  rng = np.random.default_rng(0)
  scores = np.zeros((n, n))
  for i, rank in enumerate(want):
    others = rng.permutation([s for s in range(1, n + 1) if s != n + 1 - rank])
    scores[i] = np.insert(others, i, n + 1 - rank)
  np.testing.assert_array_equal(retrieval_ranks(scores, np.eye(n)), want)
  # Chunks of queries give the same ranks as one pass.
  np.testing.assert_array_equal(retrieval_ranks(scores, np.eye(n), chunk=5), want)
  # recall@1: ranks 1, 1, 1 of 12; @5: 7 of 12; @10: 10 of 12; median of the sorted ranks = (4 + 5) / 2.
  assert retrieval_metrics(scores, np.eye(n)) == pytest.approx(
    {"recall@1": 3 / 12, "recall@5": 7 / 12, "recall@10": 10 / 12, "median_rank": 4.5}
  )


def test_ties_are_optimistic():
  scores = np.array(
    [
      [1.0, 1.0, 0.0],  # Own score tied with another: rank 1.
      [2.0, 1.0, 1.0],  # One strictly better, one tied: rank 2.
      [0.0, 1.0, 1.0],
    ]
  )  # Tied with another: rank 1.
  np.testing.assert_array_equal(retrieval_ranks(scores, np.eye(3)), [1, 2, 1])
  # A tower that outputs one constant vector ties everything: every rank is 1 (see the module docstring).
  constant = np.ones((5, 4))
  np.testing.assert_array_equal(retrieval_ranks(np.eye(5, 4), constant), [1] * 5)


def test_unpaired_rows_are_rejected():
  with pytest.raises(ValueError, match="pair row by row"):
    retrieval_ranks(np.ones((3, 2)), np.ones((4, 2)))


class _Cache:
  """FeatureCache's interface on fixed features: {embedding: [N, D]}."""

  def __init__(self, towers):
    self.towers, self.calls = towers, []

  def get(self, split, embedding, readout, limit=0):
    self.calls.append((split, embedding, readout, limit))
    x = self.towers[embedding]
    return x, np.zeros(len(x), np.int32)


def test_evaluator_reads_both_towers_from_the_cache():
  cfg = config_lib.eval_config("paired_retrieval", num_examples=6)
  assert registry.EVALUATORS.get("paired_retrieval") is paired_retrieval.PairedRetrieval
  video = np.eye(6)
  cache = _Cache({"video": video, "motion": np.roll(video, -1, axis=0)})
  metrics = paired_retrieval.PairedRetrieval.run(ConfigDict(), cfg, None, None, cache)
  assert cache.calls == [("test", "video", "mean", 6), ("test", "motion", "mean", 6)]
  assert metrics == {
    "recall@1": 0.0,
    "recall@5": 1.0,
    "recall@10": 1.0,
    "median_rank": 2.0,
    "reverse/recall@1": 0.0,
    "reverse/recall@5": 1.0,
    "reverse/recall@10": 1.0,
    "reverse/median_rank": 2.0,
  }
  cfg.both_directions = False
  assert "reverse/recall@1" not in paired_retrieval.PairedRetrieval.run(ConfigDict(), cfg, None, None, cache)
