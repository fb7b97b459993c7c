"""The contract between the generic train loop and a method: every hook the loop calls, declared here.

A method is one file under `jvssl/methods/` that registers a `Method` subclass by name
(`@registry.METHODS.register("name")`), plus one config. The loop owns the state, optimizer,
sharding, data order, checkpoints and logging; a method says

* what it reads from the data (`inputs`: modalities, one clip or all clips per example),
* which config fields it has (`default_config`: every field it reads, with its default),
* what is trained (`build`: a module whose `.encoder` is the backbone being learned),
* how it is scored (`loss`, given the step), and what changes without gradients after each
  optimizer step (`update`: momentum teachers, queues),
* what evaluation may ask of it (`predict_fns`: named functions such as `embed_video`).

It is constructed with the run's length (`RunLength`), so schedules inside a method (teacher
momentum, temperatures) follow the trainer that runs it, and no method imports the loop.
`loss`, `update` and the predict functions run inside `jax.jit`: they must be pure functions
of their inputs, apart from writing the module's own non-Param variables in place.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

# What `predict_fns` maps names to: fn(model, batch) -> array [B, ...], batch as in `Method.loss`.
PredictFn = Callable[[nnx.Module, dict], jax.Array]

# Batch keys a source may give: "text" is int32 token ids [B, L] (or [B, N, L]) of the source's captions;
# "audio" the clip's log-mel spectrogram, float32 [B, frames, mel bins] (or [B, K, ...]), with "has_audio" [B].
MODALITIES = ("video", "label", "text", "audio", "has_audio")


@dataclasses.dataclass(frozen=True)
class RunLength:
  """How long the run is: what schedules inside a method run over."""

  num_steps: int  # Optimizer steps of the whole run.
  steps_per_epoch: float  # Optimizer steps per pass over the training split.


@dataclasses.dataclass(frozen=True)
class Inputs:
  """What a method's loss reads from a batch; the data pipeline loads exactly this.

  modalities: the batch keys the loss reads ("video", "label", ...).
  all_clips: True if the loss takes every clip the data gives per example (`data.clips_per_video`
    = K, video [B, K, T, H, W, C]: CVRL-style clips of one video); False if it takes one clip
    [B, T, H, W, C], and the pipeline decodes only one.
  """

  modalities: tuple[str, ...] = ("video",)
  all_clips: bool = False

  def __post_init__(self):
    unknown = [m for m in self.modalities if m not in MODALITIES]
    if unknown:
      raise ValueError(f"unknown modalities {unknown}; known: {MODALITIES}")


def embed_video(model: nnx.Module, batch: dict) -> jax.Array:
  """batch["video"] [B, T, H, W, 3] normalised -> the encoder's pooled embedding [B, D] (float32)."""
  return model.encoder(batch["video"])["pooled"].astype(jnp.float32)


def video_tokens(model: nnx.Module, batch: dict) -> jax.Array:
  """batch["video"] [B, T, H, W, 3] normalised -> the encoder's tokens [B, T', H' * W', D] (float32), time-major."""
  tokens = model.encoder(batch["video"])["tokens"]
  t = model.encoder.grid[0]
  return tokens.reshape(tokens.shape[0], t, -1, tokens.shape[-1]).astype(jnp.float32)


class Method:
  """A training objective. Subclasses override `default_config`, `build` and `loss`; the rest is optional."""

  def __init__(self, config: ConfigDict, run: RunLength):
    self.config = config
    self.run = run

  @staticmethod
  def default_config() -> ConfigDict:
    """Every field of `config.method` this method reads, with its default (validation rejects others)."""
    return ConfigDict()

  def inputs(self) -> Inputs:
    """What the loss reads from a batch (see `Inputs`)."""
    return Inputs()

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    """The trainable module. Its `.encoder` is the backbone (jvssl.models.build) that evaluation reads."""
    raise NotImplementedError

  def loss(
    self, model: nnx.Module, batch: dict[str, jax.Array], rng: jax.Array, step: jax.Array
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(scalar loss, metrics dict of scalars) of one batch.

    batch: the keys of `inputs().modalities`; "video" is normalised float [B, T, H, W, 3] (or
    [B, K, T, H, W, 3] when `inputs().all_clips`). rng: this step's key. step: int32 [], optimizer
    steps taken before this one. The loss may write the module's non-Param variables (batch
    statistics, DINO's centre); the loop keeps what it writes.
    """
    raise NotImplementedError

  def update(self, model: nnx.Module, step: jax.Array) -> None:
    """Non-gradient updates after each optimizer step, in place on the module (momentum teachers, queues).

    `model` holds the new parameters; step: int32 [], the steps taken before this one.
    """

  def predict_fns(self) -> dict[str, PredictFn]:
    """Named functions evaluators ask for, fn(model, batch) -> [B, ...] float32.

    "embed_<modality>": one embedding per example [B, D]; "<modality>_tokens": tokens
    [B, T', S, D] in time order. A method with other towers (text, audio, motion) adds theirs;
    an evaluator asking for a name a method does not have is skipped with a logged reason.
    """
    return {"embed_video": embed_video, "video_tokens": video_tokens}
