"""Video alignment: the phase videos go through their phases in order, and the metrics reward features that know
the phase and how far into it a step is, and not noise."""

import numpy as np
import pytest

from jvssl.data import synthetic_tasks
from jvssl.evaluate import alignment


def test_phase_videos_go_through_every_phase_in_order():
  gen = synthetic_tasks.PhaseVideos(length=24, size=16, phases=(0, 2, 4), segment=(3, 3), seed=1)
  video, phases = gen.split("train", 5)
  assert video.shape == (5, 24, 16, 16, 3) and phases.shape == (5, 24)
  for row in phases:
    assert row[0] == 0 and row[-1] == 2 and (np.diff(row) >= 0).all() and (np.diff(row) <= 1).all()
    assert min(np.bincount(row)) >= 3
  assert len({row.tobytes() for row in phases}) > 1  # The phases' lengths differ between videos.
  again = gen.split("train", 5)
  assert np.array_equal(again[0], video) and np.array_equal(again[1], phases)


def test_consecutive_equal_phases_are_refused():
  with pytest.raises(ValueError, match="consecutive phases"):
    synthetic_tasks.PhaseVideos(length=24, size=16, phases=(0, 0, 2))


def _phases(rng, videos, steps, num_phases=3):
  cuts = [np.sort(rng.choice(np.arange(1, steps), num_phases - 1, replace=False)) for _ in range(videos)]
  return np.stack([np.searchsorted(c, np.arange(steps), side="right") for c in cuts])


def test_metrics_reward_phase_aware_features_and_not_noise():
  rng = np.random.default_rng(0)
  train_phases, test_phases = _phases(rng, 12, 20), _phases(rng, 6, 20)

  def features(phases):
    # One-hot phase and the progress through it, with a little noise.
    from jvssl.evaluate import metrics

    progress = np.stack([metrics.phase_progress(p) for p in phases])
    x = np.concatenate([np.eye(3)[phases], progress[..., None]], axis=-1)
    return x + 0.01 * rng.standard_normal(x.shape)

  good = alignment.alignment_metrics(features(train_phases), train_phases, features(test_phases), test_phases)
  assert good["phase_accuracy"] == 1.0 and good["phase_progression"] > 0.9 and good["kendalls_tau"] > 0.8, good
  assert good["step_recall"] == 1.0
  noise = lambda phases: rng.standard_normal((*phases.shape, 4))
  bad = alignment.alignment_metrics(noise(train_phases), train_phases, noise(test_phases), test_phases)
  assert bad["phase_accuracy"] < 0.7 and bad["phase_progression"] < 0.3 and bad["kendalls_tau"] < 0.3, bad
  assert bad["step_recall"] < 0.8
