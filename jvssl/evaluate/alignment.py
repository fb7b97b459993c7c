"""Video alignment on frozen features (TCC's evaluation; CARL reports the same): videos that repeat one action
through the same phases, compared step by step.

Each video is read as consecutive clips of `data.num_frames` frames; its tokens averaged over space give one
feature per token time step (as `temporal_segmentation`), labelled with the phase of the step's middle frame.
Reported: phase classification (a logistic regression on the training videos' steps, accuracy on the test
videos'), step localisation (CrossTask's recall: the step the same classifier finds likeliest for each phase
lies in that phase), phase progression (`metrics.phase_progression`: R^2 of a linear regression to how far each step is
through its phase) and Kendall's tau of nearest-neighbour alignment between every pair of test videos
(`metrics.kendalls_tau`). The videos are `jvssl.data.synthetic_tasks.PhaseVideos`.
"""

import numpy as np
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.data import synthetic_tasks
from jvssl.evaluate import metrics, temporal_segmentation


def alignment_metrics(train_x, train_phases, test_x, test_phases) -> dict:
  """train_x / test_x [V, T, D] per-step features, *_phases int [V, T] -> {"phase_accuracy", "step_recall",
  "phase_progression", "kendalls_tau"}. Features are standardised by the training steps' statistics."""
  from sklearn.linear_model import LogisticRegression

  mean, std = train_x.mean((0, 1)), train_x.std((0, 1)) + 1e-6
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  flat = lambda x: x.reshape(-1, x.shape[-1])
  classifier = LogisticRegression(max_iter=1000).fit(flat(train_x), train_phases.reshape(-1))
  # Step localisation (CrossTask's recall): each phase of each test video placed at the step the classifier
  # finds most likely to be in it; a hit when that step is in the phase.
  hits = []
  for x, phases in zip(test_x, test_phases):
    probs = classifier.predict_proba(x)  # [T, classes], columns in classifier.classes_ order.
    for column, phase in enumerate(classifier.classes_):
      if (phases == phase).any():
        hits.append(phases[np.argmax(probs[:, column])] == phase)
  return {
    "phase_accuracy": float(classifier.score(flat(test_x), test_phases.reshape(-1))),
    "step_recall": float(np.mean(hits)),
    "phase_progression": metrics.phase_progression(list(train_x), list(train_phases), list(test_x), list(test_phases)),
    "kendalls_tau": metrics.kendalls_tau(list(test_x)),
  }


def videos(config, cfg) -> synthetic_tasks.PhaseVideos:
  return synthetic_tasks.PhaseVideos(
    length=cfg.clips_per_video * config.data.num_frames,
    size=config.data.image_size,
    phases=tuple(cfg.phases),
    segment=(cfg.min_phase_frames, cfg.min_phase_frames),
    seed=cfg.seed,
  )


@registry.EVALUATORS.register("alignment")
class Alignment:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "every_steps": 0,
        "embedding": "video",
        "num_train_videos": 32,
        "num_test_videos": 16,
        "clips_per_video": 8,  # Video length: this many clips of data.num_frames frames.
        "phases": (0, 2, 4, 1),  # The motions of jvssl.data.synthetic.MOTIONS each video goes through in order.
        "min_phase_frames": 4,
        "seed": 2468,  # The videos' own seed.
      }
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    gen = videos(config, cfg)
    splits = {}
    for split, n in (("train", cfg.num_train_videos), ("test", cfg.num_test_videos)):
      x, phases = temporal_segmentation.video_step_features(config, cfg, predictor, mesh, cache, gen, split, n)
      frames_per_step = phases.shape[1] // x.shape[1]
      splits[split] = (x, phases[:, frames_per_step // 2 :: frames_per_step])  # The middle frame's phase.
    return alignment_metrics(*splits["train"], *splits["test"])
