"""Zero-shot classification: each clip takes the class whose name, put into prompts, its embedding is nearest.

CLIP's protocol: every class name is written into each of `templates` ("a video of {}."), the text
tower embeds the prompts, a class's embedding is the normalised mean of its prompts', and a clip's
prediction is the class of highest cosine similarity with the clip's joint-space embedding. No
label is used for training. Class names come from the source (`source.class_names`), or from
`class_names` in this evaluator's config for sources that have none.

Metrics: "accuracy", "top5_accuracy" (when there are more than 5 classes), and "chance" (1 / classes) beside them.
"""

import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.data import pipeline, tokenizers
from jvssl.evaluate import features, metrics


def class_embeddings(predictor, data_config, names, templates) -> np.ndarray:
  """[C, E] unit rows: the mean of each class's prompt embeddings (`embed_text`), normalised."""
  prompts = [t.format(name) for name in names for t in templates]
  tokenizer = tokenizers.build(data_config.text)
  tokens = tokenizers.encode_padded(tokenizer, prompts, data_config.text.max_len)
  fn = features.jit_predict(predictor, "embed_text", data_config)
  emb = np.asarray(fn({"text": jnp.asarray(tokens)})).reshape(len(names), len(templates), -1)
  return metrics.unit(metrics.unit(emb, np.float32).mean(axis=1), np.float32)


def zero_shot_accuracy(video: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> dict[str, float]:
  """video [N, E], labels [N], classes [C, E] -> {"accuracy", "top5_accuracy" (C > 5), "chance"}."""
  sims = metrics.unit(video, np.float32) @ classes.T
  order = np.argsort(-sims, axis=1, kind="stable")
  hit = order == labels[:, None]
  out = {"accuracy": float(hit[:, 0].mean())}
  if classes.shape[0] > 5:
    out["top5_accuracy"] = float(hit[:, :5].any(axis=1).mean())
  out["chance"] = 1.0 / classes.shape[0]
  return out


@registry.EVALUATORS.register("zero_shot")
class ZeroShot:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "every_steps": 0,
        "split": "test",
        "num_examples": 0,  # The first N clips of the split (0: all).
        "video": "video_joint",  # The clips' joint-space embedding: `embed_<video>`.
        "templates": ("a video of {}.",),
        "class_names": (),  # Empty: the source's own.
      }
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    del mesh
    names = list(cfg.class_names) or getattr(pipeline.make_source(config.data, cfg.split), "class_names", None)
    if not names:
      raise features.Unavailable(f"data source '{config.data.source}' names no classes; set class_names")
    if "embed_text" not in predictor.fns:
      raise features.Unavailable("the method has no text tower ('embed_text')")
    classes = class_embeddings(predictor, config.data, names, list(cfg.templates))
    video, labels = cache.get(cfg.split, cfg.video, "mean", cfg.num_examples)
    return zero_shot_accuracy(np.asarray(video), np.asarray(labels), classes)
