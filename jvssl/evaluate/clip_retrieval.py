"""Clip retrieval by class (Xu et al. 2019, VCOP; Luo et al. 2020): each test clip queries the training clips by
cosine similarity of frozen features, and counts as found at k when any of its k nearest has its class.

Metrics "recall@k" for k in `ks` (R@1/5/10/20/50), from `metrics.class_recall_at_k`: ties go to the earlier
training clip, and a test clip whose class no training clip has counts as a miss.
"""

from ml_collections import ConfigDict

from jvssl import registry
from jvssl.evaluate import features as features_lib, metrics


@registry.EVALUATORS.register("clip_retrieval")
class ClipRetrieval:
  @staticmethod
  def default_config() -> ConfigDict:
    # train_split is the gallery, test_split the queries; num_test, like num_train, takes the first N clips.
    return features_lib.evaluator_config(
      num_test=0,
      embedding="video",
      readout="mean",
      ks=metrics.RECALL_AT,
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    del config, predictor, mesh  # The features come through the cache.
    gallery_x, gallery_y = cache.get(cfg.train_split, cfg.embedding, cfg.readout, cfg.num_train)
    query_x, query_y = cache.get(cfg.test_split, cfg.embedding, cfg.readout, cfg.num_test)
    return metrics.class_recall_at_k(query_x, query_y, gallery_x, gallery_y, tuple(cfg.ks))
