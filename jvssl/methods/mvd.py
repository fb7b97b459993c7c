"""MVD (Wang et al., "Masked Video Distillation: Rethinking Masked Feature Modeling for Self-supervised
Video Representation Learning", CVPR 2023): a student sees the visible tokens of a tube-masked clip and
two decoders regress the features of two frozen teachers at the masked tokens: an image teacher (a
ViT on single frames: spatial detail) and a video teacher (a video ViT: motion). Each teacher's last
tokens are the targets, layer-normed; the loss is lambda_image * L_image + lambda_video * L_video
(both 1 in MVD), L the mean squared error or, as MVD's scripts (--distill_loss_func SmoothL1), the smooth L1.

A teacher is any jvssl checkpoint (a pretraining run, or `jvssl.tools.import_weights`' --out, e.g.
VideoMAE for video, an ImageMAE/ViT import with tubelets of 1 frame for images): `method.<teacher>.checkpoint`
names it, its encoder's arrays become the teacher's, and the architecture is the one recorded in its
config. Without a checkpoint the teacher is a frozen random copy of the student's architecture (for
tests and demos), or, with `random_teachers` False (the published recipe), an error. The image teacher
sees the first frame of every tubelet, so its tokens line up with the student's; the video teacher
sees the clip, with the student's tubelets. Teacher weights are `Teacher` variables (carried,
checkpointed, never optimised); the checkpoint is read once on the host when the method is made and
enters the initial state as a constant.
"""

import einops
import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.errors import CheckpointError, ConfigError
from jvssl.initialize import read_checkpoint
from jvssl.methods import embedding
from jvssl.methods.base import Method
from jvssl.methods.videomae import MASKS
from jvssl.methods.vjepa import TokenPredictor, layer_norm
from jvssl.models import layers

TEACHERS = ("image_teacher", "video_teacher")
# pred, target [B, N, D] -> the mean over every entry.
LOSSES = {
  "mse": lambda pred, target: jnp.mean(jnp.square(pred - target)),
  "smooth_l1": lambda pred, target: jnp.mean(optax.huber_loss(pred, target, delta=1.0)),
}


def teacher_fields() -> ConfigDict:
  return ConfigDict({"checkpoint": "", "step": -1, "weight": 1.0})


class MVDModel(nnx.Module):
  """Student encoder, one decoder per teacher, and the frozen teachers."""

  def __init__(self, config, teachers: dict, *, rngs: nnx.Rngs):
    """teachers: {name: (model config, {array name: value} of its encoder, or None for random)}."""
    m = config.method
    kw = dict(models.dtype_kw(config), rngs=rngs)
    self.encoder = build_vit(config.model, config.data.num_frames, config.data.image_size, kw)
    self.decoders = nnx.Dict()
    self.teachers = nnx.Dict()
    for name, (model_config, arrays) in teachers.items():
      frames = config.data.num_frames if name == "video_teacher" else 1
      teacher = build_vit(model_config, frames, config.data.image_size, kw)
      frames_per_token = self.encoder.patch_size[0] if name == "video_teacher" else 1
      grid = (self.encoder.grid[0] if name == "video_teacher" else 1, *self.encoder.grid[1:])
      if teacher.grid != grid:
        raise ConfigError(
          f"MVD's {name} has a {teacher.grid} token grid, the student needs {grid}:"
          f" its tubelets must be {(frames_per_token, *self.encoder.patch_size[1:])}"
        )
      if arrays is not None:
        load_encoder(teacher, arrays, name)
      self.teachers[name] = embedding.momentum_copy(teacher)
      self.decoders[name] = TokenPredictor(
        self.encoder.grid,
        self.encoder.width,
        m.decoder_width,
        m.decoder_depth,
        m.decoder_heads,
        teacher.width,
        1,
        config.model,
        **kw,
      )

  def teacher_features(self, name: str, video) -> jax.Array:
    """The teacher's layer-normed last tokens [B, N, D_teacher] in the student's (t h w) token order."""
    teacher = self.teachers[name]
    if name == "image_teacher":
      frames = video[:, :: self.encoder.patch_size[0], None]  # [B, T', 1, H, W, C]: each tubelet's first frame.
      tokens = teacher(einops.rearrange(frames, "b t ... -> (b t) ..."), train=False)["tokens"]
      tokens = einops.rearrange(tokens, "(b t) s d -> b (t s) d", b=video.shape[0])
    else:
      tokens = teacher(video, train=False)["tokens"]
    return jax.lax.stop_gradient(layer_norm(tokens))


def build_vit(model_config, num_frames, image_size, kw):
  model = registry.MODELS.get(model_config.name)(model_config, num_frames=num_frames, image_size=image_size, **kw)
  if not hasattr(model, "embed") or not hasattr(model, "grid"):
    raise ConfigError(f"MVD needs token backbones with embed/encode (like 'vit'), not '{model_config.name}'")
  return model


def load_encoder(model: nnx.Module, arrays: dict, name: str) -> None:
  """Sets `model`'s Params from a checkpoint's encoder arrays ({"a/b": value}), in place."""
  state = nnx.state(model, nnx.Param)
  missing = []

  def take(path, x):
    key = jax.tree_util.keystr(path, simple=True, separator="/")
    if key not in arrays:
      missing.append(key)
      return x
    if arrays[key].shape != x.shape:
      raise CheckpointError(f"MVD's {name}: '{key}' is {arrays[key].shape} in its checkpoint, {x.shape} here")
    return jnp.asarray(arrays[key], x.dtype)

  pure = jax.tree_util.tree_map_with_path(take, nnx.to_pure_dict(state))
  if missing:
    raise CheckpointError(f"MVD's {name}: its checkpoint has no {', '.join(missing[:3])} (not a jvssl ViT encoder?)")
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(model, state)


def read_teacher(section, student_config, name: str):
  """(model config, encoder arrays or None) of one teacher section of config.method."""
  if not section.checkpoint:
    model_config = student_config.model.copy_and_resolve_references()
    if name == "image_teacher":
      model_config.patch_size = (1, *student_config.model.patch_size[1:])
    return model_config, None
  path = section.checkpoint
  if not (epath.Path(path) if "://" in path else epath.Path(path).expanduser()).exists():
    raise ConfigError(f"method.{name}.checkpoint {path} does not exist: give the teacher's jvssl workdir or checkpoint")
  saved = read_checkpoint(path, section.step)
  if not saved.config or "model" not in saved.config:
    raise CheckpointError(f"MVD's {name}: {saved.where} records no config, so its architecture is unknown")
  model_config = ConfigDict(saved.config["model"])
  model_config.patch_size = tuple(model_config.patch_size)
  prefix = "params/encoder/"
  arrays = {k[len(prefix) :]: v for k, v in saved.arrays.items() if k.startswith(prefix)}
  if "pos_embed" in arrays:
    arrays["pos_embed"] = _pos_table(arrays["pos_embed"], saved.config, model_config, student_config, name)
  return model_config, arrays


def _pos_table(table: np.ndarray, saved_config: dict, model_config, student_config, name: str) -> np.ndarray:
  """A learned position table resampled from the teacher's training grid to the one it sees here."""
  pt, ph, pw = model_config.patch_size
  h, w = layers.image_hw(saved_config["data"]["image_size"])
  source = (saved_config["data"]["num_frames"] // pt, h // ph, w // pw)
  h, w = layers.image_hw(student_config.data.image_size)
  frames = student_config.data.num_frames if name == "video_teacher" else 1
  target = (frames // pt, h // ph, w // pw)
  return table if source == target else layers.resize_pos_table(table, source, target)


@registry.METHODS.register("mvd")
class MVD(Method):
  """Masked distillation of an image and a video teacher's features into one student."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "mask_ratio": 0.9,
        "mask_type": "tube",
        "decoder_width": 384,
        "decoder_depth": 2,
        "decoder_heads": 6,
        "loss": "mse",  # "mse" or "smooth_l1" (MVD's scripts: torch.nn.SmoothL1Loss, beta 1).
        # False: a teacher (of weight > 0) without a checkpoint is an error, not a frozen random network.
        "random_teachers": True,
        # weight 0 leaves a teacher out.
        "image_teacher": teacher_fields(),
        "video_teacher": teacher_fields(),
      }
    )

  def __init__(self, config, run):
    super().__init__(config, run)
    m = config.method
    if m.mask_type not in MASKS:
      raise ConfigError(f"method.mask_type must be one of {list(MASKS)}, not {m.mask_type!r}")
    if m.loss not in LOSSES:
      raise ConfigError(f"method.loss must be one of {list(LOSSES)}, not {m.loss!r}")
    for name in TEACHERS:
      if m[name].weight and not m[name].checkpoint and not m.random_teachers:
        raise ConfigError(
          f"method.{name}.checkpoint is empty: MVD distils pretrained teachers; give its jvssl workdir or checkpoint"
        )
    self.teachers = {name: read_teacher(m[name], config, name) for name in TEACHERS if m[name].weight}
    if not self.teachers:
      raise ConfigError("MVD needs a teacher: set method.image_teacher.weight or method.video_teacher.weight > 0")

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return MVDModel(self.config, self.teachers, rngs=rngs)

  def loss(self, model, batch, rng, step):
    m = self.config.method
    video = batch["video"]
    mask_rng, drop_rng = jax.random.split(rng)
    visible, masked = MASKS[m.mask_type](mask_rng, video.shape[0], model.encoder.grid, m.mask_ratio)
    z = model.encoder.encode(model.encoder.embed(video, visible), drop_rng, visible)
    total, metrics = 0.0, {}
    for name in self.teachers:
      target = jnp.take_along_axis(model.teacher_features(name, video), masked[..., None], axis=1)
      pred = model.decoders[name](z, visible, masked).astype(jnp.float32)
      loss = LOSSES[m.loss](pred, target)
      metrics[f"{m.loss}/{name}"] = loss
      total += m[name].weight * loss
    return total, metrics
