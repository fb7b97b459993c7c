"""Semi-supervised video object segmentation from frozen patch features (the DAVIS protocol of CRW, DINO and
V-JEPA's dense evaluations), J&F on synthetic videos whose shape masks are known.

The frozen encoder reads each video as consecutive clips; its tokens (`<embedding>_tokens`) are one feature
per patch and token time step. The first step's labels are the first frame's mask averaged over each patch;
every later step takes its labels from the `context` steps before it and the first one: each patch attends to
its `topk` most similar context patches (cosine similarity / temperature, softmax) and averages their labels.
Those labels, resized to pixels, are the predicted mask, scored against the mask of the step's middle frame by
region similarity J and contour accuracy F (`metrics.jaccard`, `metrics.boundary_f`) over every step but the
first. The videos are `jvssl.data.synthetic_tasks.SegmentationVideos` with their `masks`.
"""

import jax
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.evaluate import host_clips, metrics, temporal_segmentation


def propagate(features: np.ndarray, first: np.ndarray, *, context: int, topk: int, temperature: float):
  """features [T, P, D] (P patches per step), first [P, C] the first step's labels -> labels [T, P, C]."""
  x = features / (np.linalg.norm(features, axis=-1, keepdims=True) + 1e-8)
  labels = [first]
  for t in range(1, len(x)):
    steps = sorted({0, *range(max(t - context, 0), t)})
    keys = np.concatenate([x[s] for s in steps])  # [|ctx| * P, D]
    values = np.concatenate([labels[s] for s in steps])
    scores = x[t] @ keys.T / temperature
    k = min(topk, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    weights = np.take_along_axis(scores, top, axis=1)
    weights = np.exp(weights - weights.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    labels.append(np.einsum("pk,pkc->pc", weights, values[top]))
  return np.stack(labels)


def video_scores(features, masks, grid, frames_per_step: int, cfg) -> tuple[list, list]:
  """One video: features [T', h * w, D], masks bool [L, S, S] -> (J of each step but the first, F of each)."""
  _, h, w = grid
  size = masks.shape[1]
  patch_fraction = masks[0].reshape(h, size // h, w, size // w).mean(axis=(1, 3)).reshape(-1)
  first = np.stack([1.0 - patch_fraction, patch_fraction], axis=-1)
  labels = propagate(features, first, context=cfg.context, topk=cfg.topk, temperature=cfg.temperature)
  js, fs = [], []
  for t in range(1, len(labels)):
    foreground = np.asarray(jax.image.resize(labels[t, :, 1].reshape(h, w), (size, size), "bilinear"))
    predicted, truth = foreground > 0.5, masks[t * frames_per_step + frames_per_step // 2]
    js.append(metrics.jaccard(predicted, truth))
    fs.append(metrics.boundary_f(predicted, truth))
  return js, fs


@registry.EVALUATORS.register("object_segmentation")
class ObjectSegmentation:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "every_steps": 0,
        "embedding": "video",
        "num_videos": 16,
        "clips_per_video": 4,  # Video length: this many clips of data.num_frames frames.
        "context": 4,  # Earlier token steps each step takes labels from, besides the first.
        "topk": 5,  # Context patches each patch averages the labels of (CRW / DINO: 5-10).
        "temperature": 0.07,
        "num_classes": 4,  # The videos' motions (temporal_segmentation's videos).
        "segment": (6, 16),
        "seed": 8642,  # The videos' own seed.
      }
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    fn = cache.function(cfg.embedding, "tokens")
    grid = nnx.merge(predictor.graphdef, predictor.params, predictor.rest).encoder.grid
    gen = temporal_segmentation.videos(config, cfg)
    video, _ = gen.split("test", cfg.num_videos)
    tokens = host_clips.predict_videos(config, mesh, fn, video)  # [V, clips, T' * h * w, D]
    features = tokens.reshape(cfg.num_videos, -1, grid[1] * grid[2], tokens.shape[-1])  # [V, clips * T', h * w, D]
    js, fs = [], []
    for i in range(cfg.num_videos):
      j, f = video_scores(features[i], gen.masks(i, "test"), grid, config.data.num_frames // grid[0], cfg)
      js, fs = js + j, fs + f
    j_mean, f_mean = float(np.mean(js)), float(np.mean(fs))
    return {"j_mean": j_mean, "f_mean": f_mean, "jf_mean": (j_mean + f_mean) / 2}
