"""Near-duplicate video retrieval on frozen features, with the FIVR / CC_WEB_VIDEO protocol (ViSiL, DnS).

Each video is read as consecutive clips of `data.num_frames` frames, each embedded by the method's pooled
embedding; two videos' similarity aggregates their clips' cosine similarities (`aggregate`, chamfer by default:
the mean over the query's clips of the best match). Every query ranks the database, and the mean average
precision over queries is reported (`metrics.mean_average_precision`). The videos are
`jvssl.data.synthetic_tasks.NearDuplicates`: copies of each query re-timed, cropped and JPEG re-encoded,
among distractors. `metrics.read_fivr` and `metrics.read_cc_web_video` read the real benchmarks' annotations.
"""

import numpy as np
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.data import synthetic_tasks
from jvssl.evaluate import host_clips, metrics


def clip_embeddings(config, mesh, fn, video: np.ndarray) -> np.ndarray:
  """video uint8 [V, L, S, S, 3], L a multiple of data.num_frames -> per-clip embeddings [V, L / T, D]."""
  v, length = video.shape[:2]
  t = config.data.num_frames
  out = host_clips.predict_clips(config, mesh, fn, video.reshape(v * (length // t), t, *video.shape[2:]))
  return out.reshape(v, length // t, -1)


def retrieval_map(query_clips, database_clips, query_ids, database_ids, positives, aggregate: str) -> float:
  """mAP of queries [Q, m, D] against database [N, n, D] (clip embeddings), positives: query id -> relevant ids."""
  annotations = metrics.NearDuplicateAnnotations(queries=tuple(query_ids), positives=positives)
  similarities = metrics.similarity_matrix(list(query_clips), list(database_clips), aggregate)
  return metrics.mean_average_precision(similarities, query_ids, database_ids, annotations)["mAP"]


def benchmark(config, cfg) -> synthetic_tasks.NearDuplicates:
  videos = synthetic_tasks.SegmentationVideos(
    length=cfg.clips_per_video * config.data.num_frames, size=config.data.image_size, seed=cfg.seed
  )
  return synthetic_tasks.NearDuplicates(videos, copies=cfg.copies)


@registry.EVALUATORS.register("near_duplicate")
class NearDuplicate:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "every_steps": 0,
        "embedding": "video",
        "num_queries": 32,
        "num_distractors": 64,
        "copies": 2,  # Near-duplicates of each query in the database.
        "clips_per_video": 4,  # Video length: this many clips of data.num_frames frames.
        "aggregate": "chamfer",  # Or "mean", "max": metrics.video_similarity.
        "seed": 4321,  # The videos' own seed.
      }
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    del predictor  # The embedding comes through the cache's function.
    fn = cache.function(cfg.embedding, "mean")
    queries, database, query_ids, database_ids, positives = benchmark(config, cfg).build(
      cfg.num_queries, cfg.num_distractors
    )
    query_clips = clip_embeddings(config, mesh, fn, queries)
    database_clips = clip_embeddings(config, mesh, fn, database)
    score = retrieval_map(query_clips, database_clips, query_ids, database_ids, positives, cfg.aggregate)
    return {"mAP": score}
