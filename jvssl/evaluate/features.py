"""A method's named functions (`Method.predict_fns`) applied to whole splits, and the per-round cache of them."""

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


class Unavailable(Exception):
  """An evaluator cannot run on this model (the method has no function it needs); the message says why."""


def function_name(embedding: str, readout: str) -> str:
  """The predict function a frozen-feature evaluator reads.

  readout "mean": `embed_<embedding>`, one embedding per clip [B, D]. "time":
  `<embedding>_tokens` averaged over space but kept in time order, [B, T' * D], so a
  linear readout can see motion.
  """
  if readout == "mean":
    return f"embed_{embedding}"
  if readout == "time":
    return f"{embedding}_tokens"
  raise ConfigError(f"readout must be 'mean' or 'time', not '{readout}'")


def _readout(outputs: jax.Array, readout: str) -> jax.Array:
  if readout == "time":  # [B, T', S, D] -> [B, T' * D]
    return outputs.mean(axis=2).reshape(outputs.shape[0], -1)
  return outputs


def eval_data_config(config):
  """The data config for evaluation: one clip per video."""
  cfg = config.copy_and_resolve_references()
  cfg.data.clips_per_video = 1
  return cfg


def jit_predict(predictor, name: str, data_config, readout: str = "mean"):
  """fn(batch of uint8 video) -> predictor.fns[name] on the normalised batch, jitted; Unavailable if absent."""
  if name not in predictor.fns:
    raise Unavailable(f"the method has no '{name}' (it has {', '.join(sorted(predictor.fns))})")
  fn = predictor.fns[name]

  @jax.jit
  def apply(params, rest, batch):
    model = nnx.merge(predictor.graphdef, params, rest, copy=True)
    batch = dict(batch, video=normalize_video(batch["video"], data_config))
    return _readout(fn(model, batch), readout).astype(jnp.float32)

  return lambda batch: apply(predictor.params, predictor.rest, batch)


def predict_split(config, mesh, fn, split: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Applies fn(batch) -> [B, ...] to every clip of `split`; returns (outputs, labels) on host."""
  config = eval_data_config(config)
  rules = sharding.rules_from_config(config)
  ds, num_examples = pipeline.eval_dataset(config, split, config.eval.batch_size, limit=limit)
  outputs, labels = [], []
  with sharding.use(mesh, rules):
    for local in ds.as_numpy_iterator():
      batch = pipeline.to_global(local, mesh, rules)
      out = fn(batch)
      outputs.append(multihost_utils.process_allgather(out, tiled=True))
      labels.append(multihost_utils.process_allgather(batch["label"], tiled=True))
  return np.concatenate(outputs)[:num_examples], np.concatenate(labels)[:num_examples]


class FeatureCache:
  """Computes each (split, function, readout, limit) once per evaluation round."""

  def __init__(self, config, predictor, mesh):
    self.config, self.predictor, self.mesh = config, predictor, mesh
    self._cache: dict = {}
    self._fns: dict = {}  # One jitted function per (name, readout): the splits share its compilation.

  def get(self, split: str, embedding: str, readout: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, F], labels [N]) of `split` from the method's function for (embedding, readout)."""
    name = function_name(embedding, readout)
    key = (split, name, readout, limit)
    if key not in self._cache:
      if (name, readout) not in self._fns:
        self._fns[name, readout] = jit_predict(self.predictor, name, self.config.data, readout)
      fn = self._fns[name, readout]
      self._cache[key] = predict_split(self.config, self.mesh, fn, split, limit)
      log.info("features %s/%s: %s", split, name, self._cache[key][0].shape)
    return self._cache[key]
