"""Cross-tower retrieval (the text-to-video protocol): each example's `query` embedding must find its own
`gallery` embedding among those of every example of the split.

Example i's query is scored against the gallery items of all N examples by cosine similarity; its own
item is its only match. Its rank is 1 + the number of gallery items strictly more similar than its own
(ties broken in its favour, as the usual text-video retrieval code does by taking the first position of
the matching score in the sorted row). Exact ties only arise when features are degenerate: if a tower
outputs one constant vector (or zeros) every rank is 1, so check its spread
(`jvssl.methods.losses.embedding_stats`) before trusting a perfect score.

Metrics: "recall@k" (k = 1, 5, 10), the fraction of queries whose match ranks k or better, and
"median_rank" (1-based); with `both_directions`, the same for gallery -> query under "reverse/".
"""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.evaluate import metrics

RECALL_AT = (1, 5, 10)


@jax.jit
def _ranks(query: jax.Array, gallery: jax.Array, own: jax.Array) -> jax.Array:
  """query [n, D], gallery [N, D] unit rows, own [n] int: each query's gallery row -> its 1-based rank [n]."""
  # Full float32 so that accelerators' reduced-precision matmuls do not reorder close scores.
  sims = jnp.matmul(query, gallery.T, precision=jax.lax.Precision.HIGHEST)  # [n, N]
  # The match's score from the same matmul, so that it compares exactly with the others in its row.
  own_sim = jnp.take_along_axis(sims, own[:, None], axis=1)
  return 1 + jnp.sum(sims > own_sim, axis=1)


def retrieval_ranks(query, gallery, *, chunk: int = 1024) -> np.ndarray:
  """query [N, D], gallery [N, D], row i of each from example i -> int [N]: the rank of gallery[i] for query[i].

  1-based; ties are optimistic (1 + the number of gallery rows strictly more similar). Queries go
  `chunk` rows at a time, so memory is chunk x N similarities.
  """
  if query.shape[0] != gallery.shape[0]:
    raise ValueError(f"query and gallery must pair row by row, got {query.shape[0]} and {gallery.shape[0]} rows")
  query, gallery = metrics.unit(query, np.float32), jnp.asarray(metrics.unit(gallery, np.float32))
  return np.concatenate(
    [
      np.asarray(_ranks(jnp.asarray(query[i : i + chunk]), gallery, jnp.arange(i, min(i + chunk, len(query)))))
      for i in range(0, len(query), chunk)
    ]
  )


def retrieval_metrics(query, gallery, *, chunk: int = 1024) -> dict[str, float]:
  """query [N, D], gallery [N, D] (row i of each from example i) -> {"recall@k": [0, 1], "median_rank": >= 1}.

  Cosine similarity, gallery[i] the only match of query[i], optimistic ties (see `retrieval_ranks`).
  """
  ranks = retrieval_ranks(query, gallery, chunk=chunk)
  metrics = {f"recall@{k}": float(np.mean(ranks <= k)) for k in RECALL_AT}
  metrics["median_rank"] = float(np.median(ranks))
  return metrics


@registry.EVALUATORS.register("paired_retrieval")
class PairedRetrieval:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "every_steps": 0,
        "split": "test",
        "num_examples": 0,
        "query": "video",
        "gallery": "motion",
        "readout": "mean",
        "both_directions": True,
      }
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    del config, predictor, mesh  # The features come through the cache.
    query, _ = cache.get(cfg.split, cfg.query, cfg.readout, cfg.num_examples)
    gallery, _ = cache.get(cfg.split, cfg.gallery, cfg.readout, cfg.num_examples)
    metrics = retrieval_metrics(query, gallery)
    if cfg.both_directions:
      metrics.update({f"reverse/{k}": v for k, v in retrieval_metrics(gallery, query).items()})
    return metrics
