"""k-nearest-neighbour classification on frozen features (cosine similarity, weighted votes).

The training features stay sharded over the devices (`features.Features`): a chunk of
test clips goes to every device, each device finds the chunk's k nearest among its own
training rows, and the k * devices candidates are merged into the k nearest overall.
"""

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.evaluate import features as features_lib


def _unit(x):
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


@functools.partial(jax.jit, static_argnames=("mesh", "rows", "k", "num_classes", "chunk"))
def _accuracy(train, test, temperature, *, mesh, rows, k: int, num_classes: int, chunk: int):
  def nearest(query, x, y, mask):
    """query [c, F] (on every device), this device's rows x [n, F] -> the k most similar of all rows (sims, labels
    [c, k])."""
    # Padding rows score -inf: if they are ever among the k, their vote exp(-inf) is 0.
    sims = jnp.where(mask > 0, query @ x.T, -jnp.inf)
    sims, idx = jax.lax.top_k(sims, min(k, x.shape[0]))
    labels = y[idx]
    if rows is not None:
      sims, labels = (jax.lax.all_gather(a, rows, axis=1, tiled=True) for a in (sims, labels))
    sims, idx = jax.lax.top_k(sims, min(k, sims.shape[1]))
    return sims, jnp.take_along_axis(labels, idx, axis=1)

  # check_vma off: after all_gather every device merges the same candidates, which shard_map cannot tell.
  nearest = jax.shard_map(nearest, mesh=mesh, in_specs=(P(), P(rows), P(rows), P(rows)), out_specs=P(), check_vma=False)
  train_x = _unit(train.x)
  query = _unit(test.x)
  num_chunks = -(-query.shape[0] // chunk)
  query = jnp.pad(query, ((0, num_chunks * chunk - query.shape[0]), (0, 0))).reshape(num_chunks, chunk, -1)

  def predict(q):
    sims, labels = nearest(q, train_x, train.label, train.mask)
    votes = jax.nn.one_hot(labels, num_classes) * jnp.exp(sims / temperature)[..., None]
    return votes.sum(axis=1).argmax(-1)

  pred = jax.lax.map(predict, query).reshape(-1)[: test.x.shape[0]]
  weight = test.mask.astype(jnp.float32)
  return jnp.sum(weight * (pred == test.label)), jnp.sum(weight)


def knn_accuracy(
  train: features_lib.Features,
  test: features_lib.Features,
  *,
  k: int,
  temperature: float,
  num_classes: int,
  chunk: int = 1024,
) -> float:
  """DINO-style weighted k-NN: votes exp(cos/temperature) of the k most similar training clips.

  Returns the top-1 accuracy on the real rows of `test`; test clips go `chunk` at a time.
  """
  sharding = train.x.sharding
  chunk = min(chunk, test.x.shape[0])
  correct, total = _accuracy(
    train, test, temperature, mesh=sharding.mesh, rows=sharding.spec[0], k=k, num_classes=num_classes, chunk=chunk
  )
  return float(correct) / float(total)


@registry.EVALUATORS.register("knn")
class KNN:
  @staticmethod
  def default_config() -> ConfigDict:
    return features_lib.evaluator_config(
      embedding="video",
      readout="mean",
      k=20,
      temperature=0.07,
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    del predictor, mesh  # The features come through the cache.
    train = cache.sharded(cfg.train_split, cfg.embedding, cfg.readout, cfg.num_train)
    test = cache.sharded(cfg.test_split, cfg.embedding, cfg.readout)
    num_classes = features_lib.num_classes(train, test)
    return {"accuracy": knn_accuracy(train, test, k=cfg.k, temperature=cfg.temperature, num_classes=num_classes)}
