"""The student-teacher model shared by MoCo v3 and (rho-)BYOL: encoder, projector, predictor, and a
momentum copy of encoder + projector (Teacher variables, updated in `update`)."""

import jax
from flax import nnx

from jvssl import models
from jvssl.methods import embedding, heads, views
from jvssl.methods.base import Inputs, Method


class StudentTeacher(nnx.Module):
  def __init__(self, config, *, last_batch_norm: bool, rngs: nnx.Rngs):
    m = config.method
    kw = dict(models.dtype_kw(config), rngs=rngs)
    self.encoder = models.build(config, rngs=rngs)
    self.head = heads.MLP(
      self.encoder.width,
      m.hidden_dim,
      m.embed_dim,
      num_layers=m.head_layers,
      batch_norm=m.batch_norm,
      last_batch_norm=last_batch_norm,
      **kw,
    )
    self.predictor = heads.MLP(
      m.embed_dim, m.hidden_dim, m.embed_dim, num_layers=m.predictor_layers, batch_norm=m.batch_norm, **kw
    )
    self.teacher = embedding.momentum_copy(embedding.Branch(self.encoder, self.head))

  def __call__(self, videos, rng):
    """videos [B, V, ...] -> (student predictions, teacher projections), both [B * V, embed_dim]."""
    z = self.head(embedding.encode_views(self.encoder, videos, rng))
    return self.predictor(z), self.teacher(videos)


def config_fields(**overrides) -> dict:
  """The config fields MoCo v3 and BYOL share, with each one's defaults."""
  fields = {
    "num_views": 2,
    "hidden_dim": 4096,
    "embed_dim": 256,
    "head_layers": 3,
    "predictor_layers": 2,
    "batch_norm": True,
    # Teacher momentum at step 0, raised to 1 along a cosine over the run.
    "base_momentum": 0.996,
    **views.view_fields(),
  }
  fields.update(overrides)
  return fields


class MomentumMethod(Method):
  """A method whose model has `.teacher`, a momentum copy of Branch(encoder, head) that follows the student.

  The momentum rises from config.method.base_momentum to 1 along a cosine over the run's steps.
  """

  def inputs(self) -> Inputs:
    return Inputs(all_clips=True)

  def teacher_momentum(self, step: jax.Array) -> jax.Array:
    return embedding.cosine_momentum(self.config.method.base_momentum, step, self.run.num_steps)

  def update(self, model, step):
    embedding.update_teacher(model.teacher, embedding.Branch(model.encoder, model.head), self.teacher_momentum(step))

  def student_and_teacher(self, model, batch, rng):
    """(student predictions, teacher projections), each [B, V, embed_dim], of the method's views."""
    m = self.config.method
    view_rng, enc_rng = jax.random.split(rng)
    videos = views.clip_views(view_rng, batch["video"], m.num_views, **views.options(m))
    p, z = model(videos, enc_rng)
    return p.reshape(-1, m.num_views, p.shape[-1]), z.reshape(-1, m.num_views, z.shape[-1])
