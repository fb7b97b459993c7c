"""The multiview evaluator: metrics checked by hand, and a whole run checked against numpy on the same views."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from flax import nnx

from jvssl import config as config_lib, sharding
from jvssl.data import augment, pipeline
from jvssl.evaluate import features, multiview
from jvssl.trainer import Predictor


def test_metrics_by_hand():
  probs = jnp.array(
    [
      [0.5, 0.3, 0.1, 0.05, 0.03, 0.02],  # label 0: top-1.
      [0.5, 0.3, 0.1, 0.05, 0.03, 0.02],  # label 4: top-5, not top-1.
      [0.5, 0.3, 0.1, 0.05, 0.03, 0.02],  # label 5: neither.
      [0.1, 0.6, 0.1, 0.1, 0.05, 0.05],  # label 1: top-1.
      [0.1, 0.6, 0.1, 0.1, 0.05, 0.05],  # label 0: padding, left out.
    ]
  )
  total = multiview.counts(probs, jnp.array([0, 4, 5, 1, 0]), jnp.array([1, 1, 1, 1, 0]))
  out, per_class = multiview.metrics(jax.tree.map(np.asarray, total))
  assert out["top1_accuracy"] == pytest.approx(2 / 4) and out["top5_accuracy"] == pytest.approx(3 / 4)
  # Classes with videos: 0 (1/1), 1 (1/1), 4 (0/1), 5 (0/1).
  assert out["mean_class_accuracy"] == pytest.approx(0.5)
  np.testing.assert_array_equal(per_class, [1.0, 1.0, np.nan, np.nan, 0.0, 0.0])


class _Linear(nnx.Module):
  """logits = per-channel means of the clip, times a matrix: a model numpy can check."""

  def __init__(self, num_classes):
    self.w = nnx.Param(jnp.asarray(np.random.default_rng(0).normal(size=(3, num_classes)) * 3, jnp.float32))

  def __call__(self, video):
    return video.mean(axis=(1, 2, 3)) @ self.w[...]


def _config():
  c = config_lib.base_config(model="vit", method="classify")
  c.data.num_frames, c.data.frame_stride, c.data.image_size = 2, 2, 16
  c.data.synthetic.num_test, c.data.synthetic.num_classes, c.data.synthetic.video_length = 5, 6, 9
  c.evals.multiview = config_lib.eval_config("multiview", num_clips=2, batch_size=2)
  return c


def test_multiview_averages_softmax_over_each_videos_views():
  c = _config()
  model = _Linear(6)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  logits_fn = lambda m, batch: m(batch["video"])
  predictor = Predictor(graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest), {"logits": logits_fn})
  mesh = sharding.make_mesh(c.mesh)
  out = multiview.Multiview.run(c, c.evals.multiview, predictor, mesh, None)

  source = pipeline.make_source(c.data, "test")
  probs, labels = [], []
  for i in range(5):  # 5 videos in batches of 2: the last batch is padded, its padding left out.
    views = augment.test_views(source.video(tf.constant(i, tf.int64)), 2, c.data).numpy()
    assert views.shape == (6, 2, 16, 16, 3)
    x = (views / 255.0 - np.array(c.data.mean)) / np.array(c.data.std)
    logits = x.mean(axis=(1, 2, 3)) @ np.asarray(model.w[...])
    probs.append(np.mean(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), axis=0))
    labels.append(int(source.label(i)))
  expected, _ = multiview.metrics(
    jax.tree.map(np.asarray, multiview.counts(jnp.asarray(np.stack(probs)), jnp.array(labels), jnp.ones(5, jnp.int32)))
  )
  assert out == pytest.approx(expected)
  assert expected["top5_accuracy"] > 0  # Not a vacuous match of zeros.


def test_without_logits_the_evaluator_is_unavailable():
  c = _config()
  predictor = Predictor(None, {}, {}, {"embed_video": lambda m, b: b["video"]})
  with pytest.raises(features.Unavailable, match="no 'logits'"):
    multiview.Multiview.run(c, c.evals.multiview, predictor, sharding.make_mesh(c.mesh), None)
