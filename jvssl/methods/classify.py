"""Supervised classification on top of any backbone: fine-tuning as a config of the same loop."""

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.methods.base import Inputs, Method
from jvssl.models import layers


class Classifier(nnx.Module):
  """encoder -> pooled embedding -> dropout -> linear. With the ViT's final_norm="pooled" this
  is VideoMAE's fine-tuning model (mean pooling, fc_norm, head)."""

  def __init__(self, config, *, rngs: nnx.Rngs):
    method = config.method
    self.encoder = models.build(config, rngs=rngs)
    dtype, param_dtype = jnp.dtype(config.train.compute_dtype), jnp.dtype(config.train.param_dtype)
    width = self.encoder.width
    # A small head init keeps the first steps from wrecking pretrained features (VideoMAE: 0.001 scale).
    head_init = nnx.initializers.truncated_normal(0.02 * method.head_init_scale)
    self.head = layers.Dense(
      width,
      method.num_classes,
      axes=("embed", "classes"),
      kernel_init=head_init,
      dtype=dtype,
      param_dtype=param_dtype,
      rngs=rngs,
    )
    self.dropout = method.head_dropout

  def __call__(self, video, rng=None):
    """video [B, T, H, W, 3] -> logits [B, num_classes] (float32)."""
    enc_rng, drop_rng = (None, None) if rng is None else jax.random.split(rng)
    x = self.encoder(video, rng=enc_rng)["pooled"]
    if drop_rng is not None and self.dropout > 0:
      keep = jax.random.bernoulli(drop_rng, 1.0 - self.dropout, x.shape)
      x = jnp.where(keep, x / (1.0 - self.dropout), 0)
    return self.head(x).astype(jnp.float32)


@registry.METHODS.register("classify")
class Classify(Method):
  """Cross-entropy on labelled clips, with label smoothing."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "num_classes": 400,
        "label_smoothing": 0.1,
        "head_dropout": 0.0,
        "head_init_scale": 0.001,
      }
    )

  def inputs(self) -> Inputs:
    return Inputs(modalities=("video", "label"))

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return Classifier(self.config, rngs=rngs)

  def predict_fns(self):
    return dict(super().predict_fns(), logits=lambda model, batch: model(batch["video"]))

  def loss(self, model, batch, rng, step):
    logits = model(batch["video"], rng)
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], num_classes), self.config.method.label_smoothing)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    accuracy = (logits.argmax(-1) == batch["label"]).mean()
    return loss, {"accuracy": accuracy}
