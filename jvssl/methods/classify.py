"""Supervised classification on top of any backbone: fine-tuning as a config of the same loop.

With VideoMAE's fine-tuning recipe's parts as fields of `method`: label smoothing, mixup and
CutMix on the device (timm's Mixup: one mix per clip or per batch, the same for every frame),
and an optional weight EMA (timm's ModelEma) that the "logits" function then evaluates. The
host-side parts (RandAugment, random erasing, repeated augmentation) are `data.augment` fields
(jvssl/data/clip_augment.py); layer decay and drop path are `optimizer.layer_decay` and
`model.drop_path_rate`.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.errors import ConfigError
from jvssl.methods import embedding
from jvssl.methods.base import Inputs, Method
from jvssl.models import layers

MIX_MODES = ("batch", "elem")
_MIX_STREAM = 0x6D6978  # fold_in constant of the mixing key, so the model's key is the same with mixing off.


class Classifier(nnx.Module):
  """encoder -> pooled embedding -> dropout -> linear. With the ViT's final_norm="pooled" this
  is VideoMAE's fine-tuning model (mean pooling, fc_norm, head).

  With method.ema_decay > 0, `ema` holds a copy of encoder and head as Teacher variables (in the
  train state's `rest`, not optimised), updated by `Classify.update`.
  """

  def __init__(self, config, *, rngs: nnx.Rngs):
    method = config.method
    self.encoder = models.build(config, rngs=rngs)
    dtype, param_dtype = models.dtypes(config)
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
    self.ema = embedding.momentum_copy(embedding.Branch(self.encoder, self.head)) if method.ema_decay > 0 else None

  def __call__(self, video, rng=None):
    """video [B, T, H, W, 3] -> logits [B, num_classes] (float32)."""
    enc_rng, drop_rng = (None, None) if rng is None else jax.random.split(rng)
    x = self.encoder(video, rng=enc_rng)["pooled"]
    if drop_rng is not None and self.dropout > 0:
      keep = jax.random.bernoulli(drop_rng, 1.0 - self.dropout, x.shape)
      x = jnp.where(keep, x / (1.0 - self.dropout), 0)
    return self.head(x).astype(jnp.float32)

  def ema_logits(self, video):
    """video [B, T, H, W, 3] -> the EMA weights' logits [B, num_classes] (float32), in evaluation mode."""
    return self.ema.head(self.ema.encoder(video)["pooled"]).astype(jnp.float32)


def mix_clips(rng, video, targets, *, mixup_alpha, cutmix_alpha, prob, switch_prob, mode):
  """timm's Mixup on clips: each clip is mixed with the clip at the mirrored batch position (x.flip(0)).

  video: float [B, T, H, W, C]; targets: float [B, K] (one-hot, smoothed). mode "batch": one
  draw for the whole batch (timm's default, VideoMAE's); "elem": one per clip. A draw is applied
  with probability `prob`; with both alphas > 0 it is CutMix with probability `switch_prob`, else
  mixup. Mixup: lam ~ Beta(mixup_alpha), video lam * x + (1 - lam) * x_flipped. CutMix: lam ~
  Beta(cutmix_alpha) sets a box of area (1 - lam) of H x W, the same in every frame, pasted from the
  flipped clip; lam is then corrected to the box's clipped area. Targets mix with the same lam.
  Returns (video, targets) of the same shapes and dtypes.
  """
  b, _, height, width, _ = video.shape
  n = b if mode == "elem" else 1
  k_apply, k_switch, k_mixup, k_cutmix, k_y, k_x = jax.random.split(rng, 6)
  applied = jax.random.uniform(k_apply, (n,)) < prob
  if mixup_alpha > 0 and cutmix_alpha > 0:
    cutmix = jax.random.uniform(k_switch, (n,)) < switch_prob
  else:
    cutmix = jnp.full((n,), cutmix_alpha > 0)
  # An alpha of 0 is never chosen above; its lam of 1 only keeps the unused branch finite.
  beta = lambda key, alpha: jax.random.beta(key, alpha, alpha, (n,)) if alpha > 0 else jnp.ones((n,))
  lam_mixup, lam_cutmix = beta(k_mixup, mixup_alpha), beta(k_cutmix, cutmix_alpha)
  # timm's rand_bbox: sides int(side * sqrt(1 - lam)), centre uniform over the frame, clipped to it.
  ratio = jnp.sqrt(1.0 - lam_cutmix)
  cut_h, cut_w = (height * ratio).astype(jnp.int32), (width * ratio).astype(jnp.int32)
  cy = jax.random.randint(k_y, (n,), 0, height)
  cx = jax.random.randint(k_x, (n,), 0, width)
  top, bottom = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
  left, right = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
  lam_box = 1.0 - ((bottom - top) * (right - left)).astype(jnp.float32) / (height * width)
  lam = jnp.where(applied, jnp.where(cutmix, lam_box, lam_mixup), 1.0)  # [n]
  rows, cols = jnp.arange(height)[None, :, None], jnp.arange(width)[None, None, :]
  box = (rows >= top[:, None, None]) & (rows < bottom[:, None, None])
  box &= (cols >= left[:, None, None]) & (cols < right[:, None, None])  # [n, H, W]
  paste = box & (applied & cutmix)[:, None, None]
  blend = jnp.where(applied & ~cutmix, lam, 1.0)
  flipped = jnp.flip(video, axis=0)
  at = lambda v: v.reshape((n,) + (1,) * (video.ndim - 1))  # [n] -> broadcast over [B, T, H, W, C]
  mixed = at(blend) * video + (1.0 - at(blend)) * flipped
  mixed = jnp.where(paste[:, None, :, :, None], flipped, mixed).astype(video.dtype)
  lam = lam[:, None]
  return mixed, lam * targets + (1.0 - lam) * jnp.flip(targets, axis=0)


@registry.METHODS.register("classify")
class Classify(Method):
  """Cross-entropy on labelled clips, with label smoothing, mixup / CutMix and an optional weight EMA."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "num_classes": 400,
        "label_smoothing": 0.1,
        "head_dropout": 0.0,
        "head_init_scale": 0.001,
        # timm's Mixup (VideoMAE: mixup 0.8, cutmix 1.0, prob 1.0, switch prob 0.5, mode "batch"); both
        # alphas 0: off.
        "mixup_alpha": 0.0,
        "cutmix_alpha": 0.0,
        "mix_prob": 1.0,  # Probability that a draw mixes at all.
        "mix_switch_prob": 0.5,  # Probability of CutMix rather than mixup when both alphas are > 0.
        "mix_mode": "batch",  # "batch": one lam and box per batch; "elem": one per clip.
        # > 0: keep an EMA of the weights with this decay (VideoMAE's --model_ema_decay 0.9999), which the
        # "logits" function evaluates. It starts at the weights after the first step, so imported weights seed it.
        "ema_decay": 0.0,
      }
    )

  def __init__(self, config, run):
    super().__init__(config, run)
    if config.method.mix_mode not in MIX_MODES:
      raise ConfigError(f"method.mix_mode must be one of {', '.join(MIX_MODES)}, not '{config.method.mix_mode}'")

  def inputs(self) -> Inputs:
    return Inputs(modalities=("video", "label"))

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return Classifier(self.config, rngs=rngs)

  def predict_fns(self):
    if self.config.method.ema_decay > 0:
      logits = lambda model, batch: model.ema_logits(batch["video"])
    else:
      logits = lambda model, batch: model(batch["video"])
    return dict(super().predict_fns(), logits=logits)

  def loss(self, model, batch, rng, step):
    m = self.config.method
    video, labels = batch["video"], batch["label"]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, m.num_classes), m.label_smoothing)
    if m.mixup_alpha > 0 or m.cutmix_alpha > 0:
      video, targets = mix_clips(
        jax.random.fold_in(rng, _MIX_STREAM),
        video,
        targets,
        mixup_alpha=m.mixup_alpha,
        cutmix_alpha=m.cutmix_alpha,
        prob=m.mix_prob,
        switch_prob=m.mix_switch_prob,
        mode=m.mix_mode,
      )
    logits = model(video, rng)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    accuracy = (logits.argmax(-1) == labels).mean()
    return loss, {"accuracy": accuracy}

  def update(self, model, step):
    decay = self.config.method.ema_decay
    if decay <= 0:
      return
    student = embedding.Branch(model.encoder, model.head)
    # The first update copies the weights, so the average starts from what training starts from.
    decay = jnp.where(step == 0, 0.0, decay)
    embedding.update_teacher(model.ema, student, decay)
    # timm's ModelEma averages buffers too: batch statistics of CNN encoders.
    stats = nnx.state(model.ema, nnx.BatchStat)
    new = embedding.ema(nnx.to_pure_dict(stats), nnx.to_pure_dict(nnx.state(student, nnx.BatchStat)), decay)
    nnx.replace_by_pure_dict(stats, new)
    nnx.update(model.ema, stats)
