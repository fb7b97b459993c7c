"""Transition-point localisation: hand-computed matching of boundaries to transitions, and the evaluator's scores
for features that change where the motion does against features that change at random."""

import numpy as np

from jvssl.evaluate import metrics, transitions


def test_transition_frames():
  assert metrics.transition_frames([0, 0, 1, 1, 1, 2, 0]).tolist() == [2, 5, 6]
  assert metrics.transition_frames([3, 3, 3]).tolist() == []


def test_best_k_boundaries_are_matched_one_to_one_within_the_tolerance():
  frames = np.array([4, 8, 12, 16, 20])
  truth = [9, 19]
  # k = 2: the best two are frames 8 and 12; 8 finds 9, 12 is 3 frames from anything with tolerance 2.
  assert metrics.transition_scores([0.1, 0.9, 0.8, 0.0, 0.5], frames, truth, tolerance=2) == (1, 2)
  # 8 and 20 find 9 and 19.
  assert metrics.transition_scores([0.1, 0.9, 0.2, 0.0, 0.5], frames, truth, tolerance=1) == (2, 2)
  # One true transition cannot be found twice: 8 and 12 both near 10, only one match.
  assert metrics.transition_scores([0.1, 0.9, 0.8, 0.0, 0.5], frames, [10, 30], tolerance=2) == (1, 2)
  # Ties go to the earlier boundary; no true transition gives nothing to find.
  assert metrics.transition_scores([0.5, 0.5, 0.5, 0.5, 0.5], frames, [4], tolerance=0) == (1, 1)
  assert metrics.transition_scores([0.5, 0.5], frames[:2], [], tolerance=2) == (0, 0)


def test_features_that_change_with_the_motion_localise_its_transitions():
  rng = np.random.default_rng(0)
  steps, frames_per_step = 12, 2
  labels = np.stack([np.repeat(rng.permutation(4)[np.sort(rng.integers(0, 4, steps))], frames_per_step)])
  labels = np.concatenate([labels, np.repeat(np.arange(4).repeat(3)[None], frames_per_step, axis=1)])
  centres = rng.standard_normal((4, 16))
  step_labels = labels[:, ::frames_per_step]
  good = centres[step_labels] + 0.05 * rng.standard_normal((2, steps, 16))
  result = transitions.localisation(good, labels, tolerance=0)
  assert result["f1@k"] == 1.0 and result["ap"] == 1.0, result
  noise = rng.standard_normal((2, steps, 16))
  assert transitions.localisation(noise, labels, tolerance=0)["ap"] < 0.8
