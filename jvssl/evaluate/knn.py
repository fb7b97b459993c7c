"""k-nearest-neighbour classification on frozen features (cosine similarity, weighted votes)."""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from jvssl import registry


def knn_predict(
  train_x, train_y, test_x, *, k: int, temperature: float, num_classes: int, chunk: int = 1024
) -> np.ndarray:
  """DINO-style weighted k-NN: votes exp(cos/temperature) of the k most similar training clips."""
  train_x = jnp.asarray(train_x / np.linalg.norm(train_x, axis=1, keepdims=True).clip(1e-12))
  train_y = jnp.asarray(train_y)
  k = min(k, train_x.shape[0])

  @jax.jit
  def predict(x):
    x = x / jnp.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    sims, idx = jax.lax.top_k(x @ train_x.T, k)
    votes = jax.nn.one_hot(train_y[idx], num_classes) * jnp.exp(sims / temperature)[..., None]
    return votes.sum(axis=1).argmax(-1)

  return np.concatenate([np.asarray(predict(jnp.asarray(test_x[i : i + chunk]))) for i in range(0, len(test_x), chunk)])


@registry.EVALUATORS.register("knn")
class KNN:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "every_steps": 0,
        "train_split": "train",
        "test_split": "test",
        "num_train": 0,
        "embedding": "video",
        "readout": "mean",
        "k": 20,
        "temperature": 0.07,
      }
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    del predictor, mesh  # The features come through the cache.
    train_x, train_y = cache.get(cfg.train_split, cfg.embedding, cfg.readout, cfg.num_train)
    test_x, test_y = cache.get(cfg.test_split, cfg.embedding, cfg.readout)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    pred = knn_predict(train_x, train_y, test_x, k=cfg.k, temperature=cfg.temperature, num_classes=num_classes)
    return {"accuracy": float((pred == test_y).mean())}
