"""What the generic train loop asks of a method."""

from typing import Any

import jax
from flax import nnx
from ml_collections import ConfigDict


class Method:
  """A training objective: builds the trainable module and computes its loss.

  A method is one registry entry plus one config. The loop owns the state,
  optimizer, sharding, checkpoints and logging; the method only says what is
  trained (`build`, a module whose `.encoder` is the backbone being learned) and
  how it is scored (`loss`). Everything runs inside `jax.jit`, so both must be
  pure functions of their inputs.
  """

  def __init__(self, config: ConfigDict):
    self.config = config

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict()

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    raise NotImplementedError

  def loss(self, model: nnx.Module, batch: dict[str, jax.Array], rng: jax.Array
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """batch["video"]: normalised float [B, T, H, W, 3] (or [B, K, ...] for K clips).

    Returns (scalar loss, metrics dict of scalars). `rng` is this step's key.
    """
    raise NotImplementedError

  def after_update(self, params: Any, rest: Any, step: jax.Array) -> tuple[Any, Any]:
    """Non-gradient updates after each optimizer step (momentum teachers, queues)."""
    return params, rest
