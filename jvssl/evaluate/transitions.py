"""Transition-point localisation on frozen features, without training: where does a video's motion change?

The videos are temporal_segmentation's (`jvssl.data.synthetic_tasks.SegmentationVideos`, a new motion every
few frames) and so are the per-step features (the frozen encoder clip by clip, tokens averaged over space).
Each boundary between two consecutive steps is scored by the cosine distance of their features (standardised by
all steps' statistics); a good encoder's features change most where the motion does. Reported: `f1@k`, each
video's k best boundaries (k its number of true transitions) matched one to one to transitions within
`tolerance` frames (precision and recall at k are equal, so this is also both), and `ap`, the average precision
of all boundaries' scores, a boundary counting as a transition when one is within `tolerance` frames.
"""

import numpy as np
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.evaluate import metrics, temporal_segmentation


def boundary_scores(x: np.ndarray) -> np.ndarray:
  """Per-step features [V, T, D] -> the cosine distance across each boundary [V, T - 1]."""
  unit = x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)
  return 1.0 - (unit[:, 1:] * unit[:, :-1]).sum(-1)


def localisation(x: np.ndarray, frame_labels: np.ndarray, tolerance: int) -> dict:
  """x [V, T, D] per-step features of videos with frame_labels int [V, L], L a multiple of T -> {"f1@k", "ap"}."""
  from sklearn.metrics import average_precision_score

  frames_per_step = frame_labels.shape[1] // x.shape[1]
  x = (x - x.mean((0, 1))) / (x.std((0, 1)) + 1e-6)
  scores = boundary_scores(x)
  boundary_frames = np.arange(1, x.shape[1]) * frames_per_step  # Boundary s starts step s + 1.
  matched = total = 0
  positive = []
  for video_scores, labels in zip(scores, frame_labels):
    truth = metrics.transition_frames(labels)
    m, k = metrics.transition_scores(video_scores, boundary_frames, truth, tolerance)
    matched, total = matched + m, total + k
    positive.append([bool(len(truth)) and np.abs(truth - f).min() <= tolerance for f in boundary_frames])
  positive = np.asarray(positive).reshape(-1)
  ap = float(average_precision_score(positive, scores.reshape(-1))) if positive.any() else float("nan")
  return {"f1@k": matched / total if total else float("nan"), "ap": ap}


@registry.EVALUATORS.register("transitions")
class Transitions:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "every_steps": 0,
        "embedding": "video",
        "num_test_videos": 32,
        "clips_per_video": 8,  # Video length: this many clips of data.num_frames frames.
        "num_classes": 4,  # The first N motions of jvssl.data.synthetic.MOTIONS.
        "segment": (6, 16),  # Shortest and longest run of one motion, in frames.
        "tolerance": 2,  # Frames between a boundary and the transition it finds.
        "seed": 4321,  # The videos' own seed (temporal_segmentation's: the same videos).
      }
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    gen = temporal_segmentation.videos(config, cfg)
    x, labels = temporal_segmentation.video_step_features(
      config, cfg, predictor, mesh, cache, gen, "test", cfg.num_test_videos
    )
    return localisation(x, labels, cfg.tolerance)
