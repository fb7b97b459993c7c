"""Frozen-encoder features of a whole split, shared by the evaluators of one round."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from jvssl import sharding
from jvssl.data import pipeline
from jvssl.data.device import normalize_video
from jvssl.errors import ConfigError

log = logging.getLogger("jvssl")


def readout(outputs: dict, grid, kind: str) -> jax.Array:
  """Clip features from encoder outputs.

  "mean": the pooled embedding [B, D]. "time": tokens averaged over space but
  kept in time order, [B, T' * D], so a linear readout can see motion.
  """
  if kind == "mean":
    return outputs["pooled"]
  if kind == "time":
    tokens = outputs["tokens"]
    t = grid[0]
    per_frame = tokens.reshape(tokens.shape[0], t, -1, tokens.shape[-1]).mean(axis=2)
    return per_frame.reshape(tokens.shape[0], -1)
  raise ConfigError(f"readout must be 'mean' or 'time', not '{kind}'")


def eval_data_config(config):
  """The data config for evaluation: one clip per video."""
  cfg = config.copy_and_resolve_references()
  cfg.data.clips_per_video = 1
  return cfg


def predict_split(config, mesh, fn, split: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Applies fn(video float) -> [B, ...] to every clip of `split`; returns (outputs, labels) on host."""
  config = eval_data_config(config)
  rules = sharding.rules_from_config(config)
  ds, num_examples = pipeline.eval_dataset(config, split, config.eval.batch_size, limit=limit)
  outputs, labels = [], []
  with sharding.use(mesh, rules):
    for local in ds.as_numpy_iterator():
      batch = pipeline.to_global(local, mesh, rules)
      out = fn(batch["video"])
      outputs.append(multihost_utils.process_allgather(out, tiled=True))
      labels.append(multihost_utils.process_allgather(batch["label"], tiled=True))
  return np.concatenate(outputs)[:num_examples], np.concatenate(labels)[:num_examples]


class FeatureCache:
  """Extracts each (split, readout, limit) once per evaluation round."""

  def __init__(self, config, encoder, mesh):
    self.config, self.mesh = config, mesh
    self._cache: dict = {}

    def features(params, rest, video, kind):
      model = nnx.merge(encoder.graphdef, params, rest, copy=True)
      out = model(normalize_video(video, config.data))
      return readout(out, model.grid, kind).astype(jnp.float32)

    self._features = jax.jit(features, static_argnums=3)
    self._encoder = encoder

  def get(self, split: str, kind: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    key = (split, kind, limit)
    if key not in self._cache:
      enc = self._encoder
      fn = lambda video: self._features(enc.params, enc.rest, video, kind)
      self._cache[key] = predict_split(self.config, self.mesh, fn, split, limit)
      log.info("features %s/%s: %s", split, kind, self._cache[key][0].shape)
    return self._cache[key]
