"""Multi-view testing (SlowFast / VideoMAE): num_clips temporal clips x 3 spatial crops of every test video,
softmax averaged over the views; top-1, top-5 and mean per-class accuracy of the method's "logits".

Each process loads only its own videos (places of whole global batches, padded with a mask), the
views go through the model one view at a time over the batch, and only per-class counts leave the
devices. A source takes part by giving whole videos: `video(index)` -> uint8 [N, H, W, 3] and
`label(index)` -> int32 (the synthetic source does); `augment.test_views` cuts the views.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry, sharding
from jvssl.data import augment, pipeline
from jvssl.data.device import normalize_video
from jvssl.evaluate import features

log = logging.getLogger("jvssl")

NUM_CROPS = 3  # augment.three_crops.


def views_dataset(config, split: str, num_clips: int, batch_size: int, limit: int = 0) -> tuple[tf.data.Dataset, int]:
  """This process's batches of whole videos' test views, and the number of videos (the first `limit` if > 0).

  A batch: video uint8 [b, num_clips * 3, T, S, S, 3], label int32 [b], mask int32 [b] (0: padding to
  whole global batches of batch_size videos), b = batch_size / processes. Global position g holds video g.
  """
  data = config.data
  source = pipeline.make_source(data, split)
  if not (hasattr(source, "video") and hasattr(source, "label")):
    raise features.Unavailable(f"data source '{data.source}' gives no whole videos (video(index), label(index))")
  num_videos = min(source.num_examples, limit) if limit else source.num_examples
  local_batch = pipeline.local_batch_size(batch_size)
  num_batches = -(-num_videos // batch_size)
  process = jax.process_index()

  def load(k):
    step, slot = k // local_batch, k % local_batch
    g = step * batch_size + process * local_batch + slot
    index = tf.minimum(g, num_videos - 1)
    views = augment.test_views(source.video(index), num_clips, data)
    return {"video": views, "label": source.label(index), "mask": tf.cast(g < num_videos, tf.int32)}

  ds = tf.data.Dataset.range(num_batches * local_batch)
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE if data.num_parallel_calls < 0 else data.num_parallel_calls)
  ds = ds.batch(local_batch, drop_remainder=True)
  return ds.prefetch(data.prefetch_batches), num_videos


def view_average(predictor, data_config):
  """fn(uint8 video [B, V, T, S, S, 3]) -> (mean logits [B, C], mean softmax [B, C]) over the V views, jitted.

  Raises features.Unavailable if the method has no "logits".
  """
  if "logits" not in predictor.fns:
    raise features.Unavailable(f"the method has no 'logits' (it has {', '.join(sorted(predictor.fns))})")
  fn = predictor.fns["logits"]

  @jax.jit
  def apply(params, rest, video):
    def one_view(clips):  # [B, T, S, S, 3]: one view of every video, so memory is that of B clips.
      model = nnx.merge(predictor.graphdef, params, rest, copy=True)
      return fn(model, {"video": normalize_video(clips, data_config)}).astype(jnp.float32)

    logits = jax.lax.map(one_view, jnp.moveaxis(video, 1, 0))  # [V, B, C]
    return logits.mean(0), jax.nn.softmax(logits, axis=-1).mean(0)

  return lambda video: apply(predictor.params, predictor.rest, video)


def counts(probs, labels, mask, k: int = 5) -> dict:
  """Per-batch sums: videos, top-1 and top-k hits, and per class [C] videos and top-1 hits (mask 0 rows left out)."""
  num_classes = probs.shape[-1]
  top = jax.lax.top_k(probs, min(k, num_classes))[1]
  hit1 = (top[:, 0] == labels) * mask
  hitk = jnp.any(top == labels[:, None], axis=-1) * mask
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32) * mask[:, None]
  return {
    "videos": mask.sum(),
    "top1": hit1.sum(),
    "top5": hitk.sum(),
    "class_videos": onehot.sum(0),
    "class_top1": (onehot * hit1[:, None]).sum(0),
  }


def metrics(total: dict) -> tuple[dict[str, float], np.ndarray]:
  """(top-1, top-5 and mean per-class accuracy, per-class top-1 accuracy [C], NaN for classes without videos)."""
  per_class = np.where(total["class_videos"] > 0, total["class_top1"] / np.maximum(total["class_videos"], 1), np.nan)
  videos = max(int(total["videos"]), 1)
  return {
    "top1_accuracy": float(total["top1"]) / videos,
    "top5_accuracy": float(total["top5"]) / videos,
    "mean_class_accuracy": float(np.nanmean(per_class)) if np.isfinite(per_class).any() else 0.0,
  }, per_class


@registry.EVALUATORS.register("multiview")
class Multiview:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "every_steps": 0,
        "test_split": "test",
        "num_test": 0,  # The first N videos of the split; 0: all.
        "num_clips": 2,  # Temporal clips per video, each cut into 3 crops (VideoMAE: K400 5, SSv2 2).
        "batch_size": 8,  # Videos per global batch, each num_clips x 3 views.
      }
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    del cache
    average = view_average(predictor, config.data)
    rules = sharding.rules_from_config(config)
    sharding.check_batch(cfg.batch_size, 1, mesh, rules)
    ds, num_videos = views_dataset(config, cfg.test_split, cfg.num_clips, cfg.batch_size, cfg.num_test)
    count = jax.jit(counts, out_shardings=sharding.replicated(mesh))
    total = None
    with sharding.use(mesh, rules):
      for local in pipeline.numpy_batches(ds):
        batch = pipeline.to_global(local, mesh, rules)
        _, probs = average(batch["video"])
        step = count(probs, batch["label"], batch["mask"])
        total = step if total is None else jax.tree.map(jnp.add, total, step)
    # Replicated: every process reads its own copy.
    total = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), total)
    out, per_class = metrics(total)
    log.info(
      "multiview %d videos x %d views: per-class top-1 %s", num_videos, cfg.num_clips * NUM_CROPS, per_class.round(3)
    )
    return out
