"""Parts shared by the embedding methods: encoding stacks of views, and momentum teachers.

A momentum teacher lives in the model as variables of type `Teacher`, not
`nnx.Param`: the loop splits the model into Params (optimised) and everything
else (`rest`), so the teacher is carried, sharded and checkpointed like batch
statistics, never touched by the optimizer (no weight decay, no Adam moments),
and updated by `Method.update` as an EMA of the student.
"""

import math

import einops
import jax
import jax.numpy as jnp
from flax import nnx


class Teacher(nnx.Variable):
  """A weight of a momentum teacher: in `rest`, updated by EMA, never by gradients."""


def encode_views(encoder, videos: jax.Array, rng=None, train: bool = True) -> jax.Array:
  """videos [B, V, T, H, W, C] -> pooled embeddings [B * V, D], batch-major (views of a video adjacent)."""
  flat = einops.rearrange(videos, "b v ... -> (b v) ...")
  return encoder(flat, rng=rng, train=train)["pooled"].astype(jnp.float32)


def momentum_copy(module: nnx.Module) -> nnx.Module:
  """A deep copy of `module` whose Params are turned into Teacher variables (metadata, e.g. sharding, kept)."""
  copy = nnx.clone(module)
  for _, node in list(nnx.iter_graph(copy)):
    if isinstance(node, (nnx.Module, nnx.List, nnx.Dict)):
      for name, value in list(vars(node).items()):
        if isinstance(value, nnx.Param):
          setattr(node, name, Teacher(value[...], **value.get_metadata()))
  return copy


def ema(teacher: dict, student: dict, momentum) -> dict:
  """teacher <- momentum * teacher + (1 - momentum) * student, leaf by leaf (pure dicts of one structure)."""
  return jax.tree.map(lambda t, s: (t * momentum + s * (1.0 - momentum)).astype(t.dtype), teacher, student)


def cosine_momentum(base: float, step: jax.Array, total_steps: int) -> jax.Array:
  """BYOL's schedule: 1 - (1 - base) * (cos(pi * step / total) + 1) / 2, from base at step 0 to 1 at the end."""
  progress = jnp.minimum(step.astype(jnp.float32) / max(total_steps, 1), 1.0)
  return 1.0 - (1.0 - base) * (jnp.cos(math.pi * progress) + 1.0) / 2.0


def update_teacher(teacher: nnx.Module, student: nnx.Module, momentum) -> None:
  """Moves `teacher`'s Teacher variables towards the matching Params of `student`, in place.

  teacher: a `momentum_copy` of a module of the same structure as `student` (e.g. a Branch
  built from the student's encoder and head). The teacher's other variables (its own batch
  statistics) are left alone.
  """
  state = nnx.state(teacher, Teacher)
  new = ema(nnx.to_pure_dict(state), nnx.to_pure_dict(nnx.state(student, nnx.Param)), momentum)
  nnx.replace_by_pure_dict(state, new)
  nnx.update(teacher, state)


class Branch(nnx.Module):
  """encoder -> pooled -> head, the part of a student that its momentum teacher copies."""

  def __init__(self, encoder: nnx.Module, head: nnx.Module):
    self.encoder = encoder
    self.head = head

  def __call__(self, videos, rng=None, train: bool = True):
    """videos [B, V, T, H, W, C] -> head outputs [B * V, ...] (batch-major)."""
    return self.head(encode_views(self.encoder, videos, rng, train))
