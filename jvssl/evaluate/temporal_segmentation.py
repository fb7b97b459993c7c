"""Temporal action segmentation on frozen features: a label for every frame of long videos whose motion changes.

The frozen encoder reads each video as consecutive clips of `data.num_frames` frames; its tokens averaged over
space (`<embedding>_tokens`, "time" readout) give one feature per token time step. A small temporal head, one
MS-TCN stage (1x1 conv, dilated residual temporal convs with dilations 1, 2, 4, ..., 1x1 conv to the classes),
is trained on the training videos' features for `steps` full-batch Adam steps; its per-step predictions,
repeated over the frames each step covers, are scored with MS-TCN's metrics (`metrics.segmentation_metrics`):
frame accuracy, edit score, F1@{10,25,50}. The videos are `jvssl.data.synthetic_tasks.SegmentationVideos`.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.data import synthetic_tasks
from jvssl.errors import ConfigError
from jvssl.evaluate import host_clips, metrics

log = logging.getLogger("jvssl")


def init_head(key, in_dim: int, width: int, num_layers: int, num_classes: int) -> dict:
  """Parameters of one MS-TCN stage: {"in": 1x1, "layers": [(dilated k=3, 1x1)] * num_layers, "out": 1x1}."""
  keys = iter(jax.random.split(key, 2 * num_layers + 2))
  dense = lambda i, o: {"w": jax.random.normal(next(keys), (i, o)) / np.sqrt(i), "b": jnp.zeros(o)}
  conv = lambda: {"w": jax.random.normal(next(keys), (3, width, width)) / np.sqrt(3 * width), "b": jnp.zeros(width)}
  return {
    "in": dense(in_dim, width),
    "layers": [{"conv": conv(), "proj": dense(width, width)} for _ in range(num_layers)],
    "out": dense(width, num_classes),
  }


def apply_head(params: dict, x: jax.Array) -> jax.Array:
  """x [V, T, F] per-step features -> logits [V, T, C]; layer i looks 2^i steps either side."""
  linear = lambda p, h: h @ p["w"] + p["b"]
  h = linear(params["in"], x)
  for i, layer in enumerate(params["layers"]):
    d = 2**i
    y = jax.lax.conv_general_dilated(
      h, layer["conv"]["w"], (1,), [(d, d)], rhs_dilation=(d,), dimension_numbers=("NWC", "WIO", "NWC")
    )
    h = h + linear(layer["proj"], jax.nn.relu(y + layer["conv"]["b"]))
  return linear(params["out"], h)


def train_head(x, frame_labels, *, frames_per_step: int, num_classes: int, cfg, seed: int) -> dict:
  """Fits the head on x [V, T, F] to frame_labels int [V, T * frames_per_step] (each step's logits stand for
  the frames it covers); returns its parameters."""
  params = init_head(jax.random.key(seed), x.shape[-1], cfg.head_width, cfg.head_layers, num_classes)
  tx = optax.adamw(cfg.lr, weight_decay=cfg.weight_decay)

  def loss(p):
    logits = jnp.repeat(apply_head(p, x), frames_per_step, axis=1)
    return optax.softmax_cross_entropy_with_integer_labels(logits, frame_labels).mean()

  @jax.jit
  def fit(params):
    def step(carry, _):
      p, state = carry
      value, grad = jax.value_and_grad(loss)(p)
      updates, state = tx.update(grad, state, p)
      return (optax.apply_updates(p, updates), state), value

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=cfg.steps)
    return params, losses

  params, losses = fit(params)
  log.info("temporal_segmentation: head loss %.4g -> %.4g in %d steps", losses[0], losses[-1], cfg.steps)
  return params


def videos(config, cfg) -> synthetic_tasks.SegmentationVideos:
  return synthetic_tasks.SegmentationVideos(
    length=cfg.clips_per_video * config.data.num_frames,
    size=config.data.image_size,
    num_classes=cfg.num_classes,
    segment=tuple(cfg.segment),
    seed=cfg.seed,
  )


def frame_features(config, mesh, fn, video: np.ndarray, steps_per_clip: int) -> np.ndarray:
  """video uint8 [V, L, S, S, 3], L a multiple of data.num_frames -> per-step features [V, L / T * T', D], with
  fn(batch) -> [B, T' * D] (a "time" readout) and T' = steps_per_clip."""
  out = host_clips.predict_videos(config, mesh, fn, video)  # [V, clips, T' * D]
  return out.reshape(len(video), out.shape[1] * steps_per_clip, -1)


def video_step_features(config, cfg, predictor, mesh, cache, gen, split: str, num_videos: int):
  """The first num_videos videos of `gen` (a SegmentationVideos) in `split` through the frozen encoder:
  (per-step features [V, L / T * T', D] of cfg.embedding, per-frame labels int [V, L])."""
  fn = cache.function(cfg.embedding, "time")
  # The token grid's time steps per clip, what `video_tokens` keeps (not a copy of the weights: no copy=True).
  steps_per_clip = nnx.merge(predictor.graphdef, predictor.params, predictor.rest).encoder.grid[0]
  video, labels = gen.split(split, num_videos)
  x = frame_features(config, mesh, fn, video, steps_per_clip)
  log.info("%s features %s", split, x.shape)
  return x, labels


@registry.EVALUATORS.register("temporal_segmentation")
class TemporalSegmentation:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "every_steps": 0,
        "embedding": "video",
        "num_train_videos": 64,
        "num_test_videos": 32,
        "clips_per_video": 8,  # Video length: this many clips of data.num_frames frames.
        "num_classes": 4,  # The first N motions of jvssl.data.synthetic.MOTIONS.
        "segment": (6, 16),  # Shortest and longest run of one motion, in frames.
        "seed": 4321,  # The videos' own seed.
        "head_layers": 4,
        "head_width": 64,
        "steps": 300,
        "lr": 3e-3,
        "weight_decay": 1e-4,
      }
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    gen = videos(config, cfg)
    train_x, train_y = video_step_features(config, cfg, predictor, mesh, cache, gen, "train", cfg.num_train_videos)
    test_x, test_y = video_step_features(config, cfg, predictor, mesh, cache, gen, "test", cfg.num_test_videos)
    frames_per_step = train_y.shape[1] // train_x.shape[1]
    if frames_per_step * train_x.shape[1] != train_y.shape[1]:
      raise ConfigError(f"{train_y.shape[1]} frames do not split into the encoder's {train_x.shape[1]} time steps")
    mean, std = train_x.mean((0, 1)), train_x.std((0, 1)) + 1e-6
    params = train_head(
      (train_x - mean) / std,
      train_y,
      frames_per_step=frames_per_step,
      num_classes=cfg.num_classes,
      cfg=cfg,
      seed=config.seed,
    )
    logits = jax.jit(apply_head)(params, jnp.asarray((test_x - mean) / std))
    pred = np.repeat(np.asarray(logits.argmax(-1)), frames_per_step, 1)
    return metrics.segmentation_metrics(list(pred), list(test_y))
