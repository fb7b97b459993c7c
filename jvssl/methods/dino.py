"""DINO-style self-distillation on video (SVT, Ranasinghe et al., CVPR 2022): the student sees global and
local spatio-temporal views (different crops, durations and frame rates), the momentum teacher only the
global ones; the teacher's outputs are centred (running mean) and sharpened (low temperature, warmed up)."""

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.methods import embedding, heads, losses, views
from jvssl.methods.momentum import MomentumMethod


class Center(nnx.Variable):
  """DINO's running mean of the teacher's logits."""


class DINOModel(nnx.Module):
  def __init__(self, config, *, rngs: nnx.Rngs):
    m = config.method
    kw = dict(models.dtype_kw(config), rngs=rngs)
    self.encoder = models.build(config, rngs=rngs)
    self.head = heads.DINOHead(
      self.encoder.width, m.hidden_dim, m.bottleneck_dim, m.num_prototypes, num_layers=m.head_layers, **kw
    )
    self.teacher = embedding.momentum_copy(embedding.Branch(self.encoder, self.head))
    self.center = Center(jnp.zeros((m.num_prototypes,), jnp.float32))


def teacher_temperature(method, step: jax.Array) -> jax.Array:
  """Linear warm-up from warmup_teacher_temp to teacher_temp over teacher_temp_warmup_steps, then constant."""
  progress = jnp.minimum(step.astype(jnp.float32) / max(method.teacher_temp_warmup_steps, 1), 1.0)
  return method.warmup_teacher_temp + progress * (method.teacher_temp - method.warmup_teacher_temp)


@registry.METHODS.register("dino")
class DINO(MomentumMethod):
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "num_global_views": 2,
        "num_local_views": 8,
        "hidden_dim": 2048,
        "bottleneck_dim": 256,
        "num_prototypes": 65536,
        "head_layers": 3,
        "student_temp": 0.1,
        "teacher_temp": 0.04,
        "warmup_teacher_temp": 0.04,
        "teacher_temp_warmup_steps": 0,
        "center_momentum": 0.9,
        "base_momentum": 0.996,
        # Global views: most of the frame and of the clip's duration; local: small crops of short windows
        # (SVT's fewer frames / other frame rates), each resampled to the clip's geometry.
        "global_crop_scale": (0.4, 1.0),
        "global_frame_fraction": (0.5, 1.0),
        "local_crop_scale": (0.05, 0.4),
        "local_frame_fraction": (0.125, 0.5),
        "view_color_strength": 0.0,  # As views.view_fields: colour jitter and grey views, global and local.
        "view_grayscale_prob": 0.0,
        "view_temporally_consistent": True,  # As views.view_fields: one crop, flip and colour per view.
        "view_flip": True,  # As views.view_fields: mirror half the views.
      }
    )

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return DINOModel(self.config, rngs=rngs)

  def loss(self, model, batch, rng, step):
    m = self.config.method
    global_rng, local_rng, enc_rng = jax.random.split(rng, 3)
    global_views = views.clip_views(
      global_rng,
      batch["video"],
      m.num_global_views,
      crop_scale=tuple(m.global_crop_scale),
      frame_fraction=tuple(m.global_frame_fraction),
      color_strength=m.view_color_strength,
      grayscale_prob=m.view_grayscale_prob,
      temporally_consistent=m.view_temporally_consistent,
      flip=m.get("view_flip", True),
    )
    student_in = global_views
    if m.num_local_views:
      local_views = views.clip_views(
        local_rng,
        views.first_clip(batch["video"])[:, None],
        m.num_local_views,
        crop_scale=tuple(m.local_crop_scale),
        frame_fraction=tuple(m.local_frame_fraction),
        color_strength=m.view_color_strength,
        grayscale_prob=m.view_grayscale_prob,
        temporally_consistent=m.view_temporally_consistent,
        flip=m.get("view_flip", True),
      )
      student_in = jnp.concatenate([global_views, local_views], axis=1)
    features = embedding.encode_views(model.encoder, student_in, enc_rng)
    b, vs = student_in.shape[:2]
    student = model.head(features).reshape(b, vs, -1).transpose(1, 0, 2)  # [Vs, B, K]
    teacher = model.teacher(global_views).reshape(b, m.num_global_views, -1).transpose(1, 0, 2)  # [Vt, B, K]
    temp = teacher_temperature(m, step)
    center = model.center[...]
    loss = losses.dino_loss(student, teacher, center, m.student_temp, temp)
    model.center[...] = losses.update_center(center, teacher, m.center_momentum)
    teacher_probs = jax.nn.softmax((jax.lax.stop_gradient(teacher) - center) / temp, axis=-1)
    entropy = -jnp.sum(teacher_probs * jnp.log(jnp.maximum(teacher_probs, 1e-12)), axis=-1).mean()
    metrics = losses.collapse_watch(features.reshape(b, vs, -1)[:, 0])
    # The loss is H(teacher) + KL(teacher || student); sharpening moves the first, learning the second.
    return loss, dict(metrics, teacher_entropy=entropy, kl=loss - entropy, teacher_temp=temp)
