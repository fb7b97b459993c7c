"""PyTorch checkpoints -> jvssl parameters: official VideoMAE / VideoMAE v2, Hugging Face
VideoMAE*, Hugging Face image ViT / ViTMAE (patch embeddings inflated to tubelets), Hugging Face
CLIP (vision and text towers), and torchvision's r3d/r2plus1d/s3d/mvit_v2_s.

CLIP ("clip": CLIPModel, CLIPVisionModel[WithProjection], CLIPTextModel[WithProjection]) fills
whichever towers the checkpoint has: the vision tower into the method's ViT `encoder` (patch
embedding inflated as for "hf_vit"; needs model.pos_embed='learned', qkv_bias='all' or 'qv', pool='cls',
final_norm='pooled', pre_norm=True, and the checkpoint's activation ('quick_gelu' for OpenAI's) and
norm_eps (1e-5)); the text tower into its `text` (a `text.TextTransformer`: causal, pooling 'argmax',
CLIP's activation, max_len <= 77, the tokenizer's vocabulary); the projections into `video_proj` /
`text_proj` and the logit scale (one pair of towers) where the method has them (video_text: the whole
CLIP model), or the text projection into the text model's own when its projection_dim > 0.

A converter reads a flat {key: array} source and writes into the pure dicts
(params, rest) of a freshly initialised jvssl model of the method the config
names (e.g. `{"encoder": ..., "head": ...}` for "classify", `{"encoder": ...,
"decoder_blocks": ...}` for "videomae"). Every source key is either consumed or
listed as unused; every target array that nothing filled is listed as kept at
initialisation; a shape mismatch is a CheckpointError naming both keys.
Only numpy here: torch is needed just to read `.pth` files (`load_state_dict`).
"""

import argparse
import dataclasses
import os
import re

import numpy as np

from jvssl.errors import CheckpointError, ConfigError
from jvssl.models import layers

FORMATS = ("videomae", "hf_videomae", "hf_vit", "clip", "torchvision")
# How a 2-D patch embedding becomes a tubelet one (I3D's inflation): the kernel divided among the
# tubelet's frames, or all of it on the central frame and zeros on the others.
INFLATIONS = ("average", "central")


def load_torchvision() -> None:
  """Imports torchvision when it is installed, also a wheel built for CUDA torch next to CPU torch.

  Such a wheel (PyPI has no CPU build) cannot register its compiled ops, and transformers imports
  torchvision as soon as it is installed; the video models need none of those ops, so their
  registration is skipped.
  """
  import importlib.util
  import sys
  import types

  if importlib.util.find_spec("torchvision") is None:
    return
  try:
    import torchvision  # noqa: F401
  except RuntimeError:
    for name in [n for n in sys.modules if n.startswith("torchvision")]:
      del sys.modules[name]
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    import torchvision  # noqa: F401


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a `.safetensors`, `.pth`/`.pt`/`.bin` file into float32/int numpy arrays.

  `.pth` files are read with `torch.load(weights_only=True)` (no arbitrary pickles);
  argparse.Namespace is allowed because the official VideoMAE checkpoints store
  their `args` that way. Weights nested under "model", "module" or "state_dict"
  are unwrapped.
  """
  if not os.path.isfile(path):
    raise CheckpointError(f"checkpoint file not found: {path}")
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file

    return {k: _float32(v) for k, v in load_file(path).items()}
  try:
    import torch
  except ImportError:
    raise ConfigError("reading .pth checkpoints needs torch: pip install -e '.[convert]'") from None
  try:
    with torch.serialization.safe_globals([argparse.Namespace]):
      obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files.
    raise CheckpointError(f"cannot read {path} with torch.load(weights_only=True): {str(e).splitlines()[0]}") from None
  for key in ("model", "module", "state_dict"):
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
      obj = obj[key]
      break
  if not isinstance(obj, dict):
    raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
  return {
    k: _float32(v.float().numpy() if v.is_floating_point() else v.numpy())
    for k, v in obj.items()
    if isinstance(v, torch.Tensor)
  }


def _float32(x: np.ndarray) -> np.ndarray:
  return x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x


@dataclasses.dataclass
class Report:
  unused: list[str]  # Source keys nothing consumed.
  kept: list[str]  # Target arrays left at their initialisation.
  ignored: list[str]  # Source keys consumed on purpose without a target (e.g. BatchNorm step counters).
  adapted: list[str] = dataclasses.field(default_factory=list)  # Tables resized to this config's input size.

  def lines(self) -> list[str]:
    out = []
    for title, keys in (
      ("source keys not used", self.unused),
      ("kept at initialisation", self.kept),
      ("ignored on purpose", self.ignored),
      ("adapted to this input size", self.adapted),
    ):
      if keys:
        out.append(f"{title} ({len(keys)}): {', '.join(keys)}")
    return out


class Mapper:
  """Copies source arrays into nested target dicts, checking shapes and recording what was used."""

  def __init__(self, source: dict[str, np.ndarray], params: dict, rest: dict, names: dict[str, str] | None = None):
    self.source = source
    self.names = names or {}  # Internal key -> the key as the file spells it, for messages.
    self.trees = {"params": params, "rest": rest}
    self.used: set[str] = set()
    self.ignored: list[str] = []
    self.adapted: list[str] = []
    self.filled: set[str] = set()

  def has(self, key: str) -> bool:
    return key in self.source

  def take(self, key: str) -> np.ndarray:
    if key not in self.source:
      raise CheckpointError(
        f"source checkpoint has no '{self.names.get(key, key)}' (is --from the right format for this file?)"
      )
    self.used.add(key)
    return self.source[key]

  def ignore(self, key: str) -> None:
    if key in self.source:
      self.used.add(key)
      self.ignored.append(self.names.get(key, key))

  def target(self, path: tuple) -> tuple[str, dict, object]:
    """(tree name, parent dict, leaf key) of `path`, which starts with "params" or "rest"."""
    node = self.trees[path[0]]
    for part in path[1:-1]:
      if part not in node:
        raise CheckpointError(f"this config's model has no '{_name(path)}' (does the config match the checkpoint?)")
      node = node[part]
    if path[-1] not in node:
      raise CheckpointError(f"this config's model has no '{_name(path)}' (does the config match the checkpoint?)")
    return path[0], node, path[-1]

  def exists(self, path: tuple) -> bool:
    try:
      self.target(path)
    except CheckpointError:
      return False
    return True

  def put(self, path: tuple, value: np.ndarray, key: str) -> None:
    _, node, leaf = self.target(path)
    expected = tuple(np.shape(node[leaf]))
    if tuple(value.shape) != expected:
      raise CheckpointError(
        f"'{self.names.get(key, key)}' has shape {tuple(value.shape)} after conversion but '{_name(path)}'"
        f" needs {expected}: the config's model does not match the checkpoint"
      )
    node[leaf] = np.asarray(value, dtype=node[leaf].dtype)
    self.filled.add(_name(path))

  def copy(self, key: str, path: tuple, fn=lambda x: x) -> None:
    self.put(path, fn(self.take(key)), key)

  def copy_rel_pos(self, key: str, path: tuple) -> None:
    """Copies a relative-position table [L, D], interpolated to the target's length as torchvision
    interpolates it at run time for inputs of another size (`torchvision.models.video.mvit._interpolate`)."""
    value = self.take(key)
    _, node, leaf = self.target(path)
    length = np.shape(node[leaf])[0]
    if value.shape[0] != length:
      self.adapted.append(f"{self.names.get(key, key)} ({value.shape[0]} -> {length} entries)")
    self.put(path, layers.resize_axis(value, 0, length, "linear"), key)

  def report(self) -> Report:
    targets = []
    for tree_name, tree in self.trees.items():
      targets += [_name((tree_name, *p)) for p in _paths(tree)]
    return Report(
      unused=sorted(self.names.get(k, k) for k in set(self.source) - self.used),
      kept=sorted(t for t in targets if t not in self.filled and not t.endswith("pos_embed")),
      ignored=self.ignored,
      adapted=self.adapted,
    )


def _name(path: tuple) -> str:
  return "/".join(str(p) for p in path)


def _paths(tree, prefix=()):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _paths(v, prefix + (k,))
  else:
    yield prefix


# ---- transformers / ViT ----------------------------------------------------------------------------


def linear_kernel(w):  # torch Linear weight [out, in] -> Dense kernel [in, out].
  return w.T


def conv3d_kernel(w):  # torch Conv3d weight [out, in, kt, kh, kw] -> [kt, kh, kw, in, out].
  return np.transpose(w, (2, 3, 4, 1, 0))


def map_block(m: Mapper, src: str, dst: tuple) -> None:
  """One official-layout transformer block (`blocks.i.`) into a layers.Block."""
  m.copy(src + "norm1.weight", dst + ("norm1", "scale"))
  m.copy(src + "norm1.bias", dst + ("norm1", "bias"))
  m.copy(src + "norm2.weight", dst + ("norm2", "scale"))
  m.copy(src + "norm2.bias", dst + ("norm2", "bias"))
  _, attn, _ = m.target(dst + ("attn", "qkv"))
  dim, _, heads, head_dim = np.shape(attn["qkv"])
  m.copy(src + "attn.qkv.weight", dst + ("attn", "qkv"), lambda w: w.T.reshape(dim, 3, heads, head_dim))
  m.copy(src + "attn.proj.weight", dst + ("attn", "proj"), lambda w: w.T.reshape(heads, head_dim, dim))
  m.copy(src + "attn.proj.bias", dst + ("attn", "proj_bias"))
  # q/v biases (VideoMAE, BEiT) or one fused bias; the key bias cancels in the softmax.
  if m.has(src + "attn.q_bias"):
    q, v = m.take(src + "attn.q_bias"), m.take(src + "attn.v_bias")
    k = np.zeros_like(q)
  elif m.has(src + "attn.qkv.bias"):
    q, k, v = np.split(m.take(src + "attn.qkv.bias"), 3)
  else:
    q = k = v = None
  if "q_bias" in attn:
    if q is None:
      raise CheckpointError(f"'{src}attn' has no q/v biases but the config wants them (model.qkv_bias='none'?)")
    m.put(dst + ("attn", "q_bias"), q.reshape(heads, head_dim), src + "attn.q_bias")
    m.put(dst + ("attn", "v_bias"), v.reshape(heads, head_dim), src + "attn.v_bias")
  elif "qkv_bias" in attn:
    if q is None:
      raise CheckpointError(f"'{src}attn' has no q/k/v biases but the config wants them (model.qkv_bias='none'?)")
    m.put(dst + ("attn", "qkv_bias"), np.stack([q, k, v]).reshape(3, heads, head_dim), src + "attn.qkv.bias")
  elif q is not None:
    raise CheckpointError(f"'{src}attn' has q/v biases but the config has none: set model.qkv_bias='qv'")
  for name in ("fc1", "fc2"):
    m.copy(f"{src}mlp.{name}.weight", dst + ("mlp", name, "kernel"), linear_kernel)
    m.copy(f"{src}mlp.{name}.bias", dst + ("mlp", name, "bias"))


def map_vit(m: Mapper, src: str, dst: tuple, final_norm: str) -> None:
  """An official-layout VideoMAE encoder (keys after prefix `src`) into a jvssl ViT at `dst`."""
  m.copy(src + "patch_embed.proj.weight", ("params", *dst, "patch_embed"), conv3d_kernel)
  m.copy(src + "patch_embed.proj.bias", ("params", *dst, "patch_bias"))
  if m.exists(("params", *dst, "pos_embed")):
    m.copy(src + "pos_embed", ("params", *dst, "pos_embed"), lambda x: x.reshape(x.shape[-2:]))
  elif m.has(src + "pos_embed"):
    _check_sincos(m, src + "pos_embed", ("rest", *dst, "pos_embed"))
  if m.exists(("params", *dst, "cls_token")):
    m.copy(src + "cls_token", ("params", *dst, "cls_token"), lambda x: x.reshape(-1))
  i = 0
  while m.has(f"{src}blocks.{i}.norm1.weight"):
    map_block(m, f"{src}blocks.{i}.", ("params", *dst, "blocks", i))
    i += 1
  _, blocks, _ = m.target(("params", *dst, "blocks"))
  if i != len(blocks["blocks"]):
    raise CheckpointError(
      f"the checkpoint has {i} encoder blocks, the config's model {len(blocks['blocks'])}:"
      " set model.variant/model.depth to match"
    )
  # Pretraining checkpoints normalise every token ("norm"); fine-tuned ones the pooled feature ("fc_norm").
  # The other one stays unused, as VideoMAE's own fine-tuning code does.
  norm = src + ("norm" if final_norm == "tokens" else "fc_norm")
  if m.has(norm + ".weight"):
    m.copy(norm + ".weight", ("params", *dst, "norm", "scale"))
    m.copy(norm + ".bias", ("params", *dst, "norm", "bias"))


def _check_sincos(m: Mapper, key: str, path: tuple) -> None:
  """The checkpoint's fixed sinusoid table, of any token count: this config's is computed for its own."""
  _, node, leaf = m.target(path)
  value = m.take(key)
  table = value.reshape(value.shape[-2:])
  ours = np.shape(node[leaf])
  name = m.names.get(key, key)
  if not layers.is_sincos_table(table):
    raise CheckpointError(f"'{name}' is not the fixed sinusoid table this config uses: set model.pos_embed='learned'")
  if table.shape[1] != ours[1]:
    raise CheckpointError(
      f"'{name}' has width {table.shape[1]}, the config's model {ours[1]}: set model.width to match"
    )
  if table.shape[0] != ours[0]:
    m.adapted.append(f"{name} (sin-cos table recomputed for {ours[0]} tokens, was {table.shape[0]})")


def map_videomae_decoder(m: Mapper) -> None:
  """The VideoMAE pretraining decoder (`decoder.`, `encoder_to_decoder`, `mask_token`) into VideoMAEModel."""
  m.copy("encoder_to_decoder.weight", ("params", "encoder_to_decoder", "kernel"), linear_kernel)
  m.copy("mask_token", ("params", "mask_token"), lambda x: x.reshape(-1))
  i = 0
  while m.has(f"decoder.blocks.{i}.norm1.weight"):
    map_block(m, f"decoder.blocks.{i}.", ("params", "decoder_blocks", i))
    i += 1
  m.copy("decoder.norm.weight", ("params", "decoder_norm", "scale"))
  m.copy("decoder.norm.bias", ("params", "decoder_norm", "bias"))
  m.copy("decoder.head.weight", ("params", "decoder_head", "kernel"), linear_kernel)
  m.copy("decoder.head.bias", ("params", "decoder_head", "bias"))


def official_videomae(m: Mapper, model_config) -> None:
  """Official VideoMAE / VideoMAE v2 keys: pretraining (`encoder.`/`decoder.`) or fine-tuned (no prefix)."""
  keys = list(m.source)
  prefix = next((p for p in ("encoder.", "backbone.") if any(k.startswith(p + "blocks.") for k in keys)), "")
  map_vit(m, prefix, ("encoder",), model_config.final_norm)
  if m.exists(("params", "decoder_head", "kernel")) and m.has("decoder.head.weight"):
    map_videomae_decoder(m)
  if m.exists(("params", "head", "kernel")) and m.has("head.weight"):
    _check_readout(m, prefix, model_config)
    m.copy("head.weight", ("params", "head", "kernel"), linear_kernel)
    m.copy("head.bias", ("params", "head", "bias"))


def _check_readout(m: Mapper, prefix: str, model_config) -> None:
  """A VideoMAE classifier mean-pools into fc_norm; one saved with use_mean_pooling=False has no fc_norm
  and reads out the first token after the token norm. The config's model must read out the same."""
  if m.has(prefix + "fc_norm.weight"):
    if model_config.pool == "first":
      raise CheckpointError("this VideoMAE classifier mean-pools its tokens (it has fc_norm): set model.pool='mean'")
  elif (model_config.pool, model_config.final_norm) != ("first", "tokens"):
    raise CheckpointError(
      "this VideoMAE classifier reads out its first token (saved with use_mean_pooling=False, no fc_norm):"
      " set model.pool='first' and model.final_norm='tokens'"
    )


_HF_BLOCK = (
  ("layernorm_before.", "norm1."),
  ("layernorm_after.", "norm2."),
  ("intermediate.dense.", "mlp.fc1."),
  ("output.dense.", "mlp.fc2."),
  ("attention.output.dense.", "attn.proj."),
  ("attention.attention.q_bias", "attn.q_bias"),
  ("attention.attention.v_bias", "attn.v_bias"),
  ("attention.attention.query.bias", "attn.q_bias"),
  ("attention.attention.value.bias", "attn.v_bias"),
)


def hf_to_official(source: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """Renames transformers' VideoMAEModel / ForPreTraining / ForVideoClassification keys to the official layout.

  Both transformers' old (`q_bias`, `v_bias`) and new (`query.bias`, `value.bias`) names map to
  the official `attn.q_bias`/`attn.v_bias`, so neither is dropped; the separate q/k/v weights
  become one `attn.qkv.weight`. Keys it does not know keep their names (and are reported unused).
  Returns (renamed arrays, {new key: original key}).
  """
  out, names, qkv = {}, {}, {}
  for key, value in source.items():
    k = key[len("videomae.") :] if key.startswith("videomae.") else key
    k = re.sub(r"^embeddings\.patch_embeddings\.projection\.", "encoder.patch_embed.proj.", k)
    k = re.sub(r"^embeddings\.position_embeddings$", "encoder.pos_embed", k)
    k = re.sub(r"^encoder\.layer\.(\d+)\.", r"encoder.blocks.\1.", k)
    k = re.sub(r"^decoder\.decoder_layers\.(\d+)\.", r"decoder.blocks.\1.", k)
    k = {
      "layernorm.weight": "encoder.norm.weight",
      "layernorm.bias": "encoder.norm.bias",
      "fc_norm.weight": "encoder.fc_norm.weight",
      "fc_norm.bias": "encoder.fc_norm.bias",
      "classifier.weight": "head.weight",
      "classifier.bias": "head.bias",
    }.get(k, k)
    block = re.match(r"^((?:encoder|decoder)\.blocks\.\d+\.)(.*)$", k)
    if block:
      start, rest = block.groups()
      proj = re.match(r"^attention\.attention\.(query|key|value)\.weight$", rest)
      if proj:
        qkv.setdefault(start, {})[proj.group(1)] = (key, value)
        continue
      for old, new in _HF_BLOCK:
        if rest.startswith(old):
          rest = new + rest[len(old) :]
          break
      k = start + rest
    out[k], names[k] = value, key
  for start, parts in qkv.items():
    if set(parts) != {"query", "key", "value"}:
      raise CheckpointError(f"'{start}' has only {sorted(parts)} of the query/key/value projections")
    out[start + "attn.qkv.weight"] = np.concatenate([parts[p][1] for p in ("query", "key", "value")])
    names[start + "attn.qkv.weight"] = parts["query"][0].replace("query.weight", "{query,key,value}.weight")
  return out, names


# ---- transformers image ViT / ViTMAE ---------------------------------------------------------------


_HF_VIT_OLD = (  # transformers < 5 block names -> transformers 5's.
  ("attention.attention.query.", "attention.q_proj."),
  ("attention.attention.key.", "attention.k_proj."),
  ("attention.attention.value.", "attention.v_proj."),
  ("attention.output.dense.", "attention.o_proj."),
  ("intermediate.dense.", "mlp.fc1."),
  ("output.dense.", "mlp.fc2."),
)
_HF_VIT_BLOCK = (  # transformers 5 block names -> the official layout's.
  ("attention.q_proj.bias", "attn.q_bias"),
  ("attention.v_proj.bias", "attn.v_bias"),
  ("attention.k_proj.bias", "attn.k_bias"),
  ("attention.o_proj.", "attn.proj."),
  ("layernorm_before.", "norm1."),
  ("layernorm_after.", "norm2."),
)


def hf_vit_to_official(source: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """Renames transformers' ViTModel / ViTForImageClassification / ViTMAEModel / ViTMAEForPreTraining keys
  (transformers 5's `layers.i.attention.q_proj`, or the `encoder.layer.i.attention.attention.query` of
  earlier versions and most Hub files) to the official layout under `encoder.`: `encoder.cls_token`,
  `encoder.pos_embed` (with its CLS row), `encoder.patch_embed.proj.weight` (2-D), `encoder.blocks.i.`
  (q/k/v weights fused into `attn.qkv.weight`), `encoder.norm.`, `head.`. ViTMAE's decoder and ViT's
  pooler keep their names and are reported unused. Returns (renamed arrays, {new key: original key}).
  """
  out, names, qkv = {}, {}, {}
  for key, value in source.items():
    k = key[len("vit.") :] if key.startswith("vit.") else key
    k = re.sub(r"^encoder\.layer\.(\d+)\.", r"layers.\1.", k)
    k = {
      "embeddings.cls_token": "encoder.cls_token",
      "embeddings.position_embeddings": "encoder.pos_embed",
      "embeddings.patch_embeddings.projection.weight": "encoder.patch_embed.proj.weight",
      "embeddings.patch_embeddings.projection.bias": "encoder.patch_embed.proj.bias",
      "layernorm.weight": "encoder.norm.weight",
      "layernorm.bias": "encoder.norm.bias",
      "classifier.weight": "head.weight",
      "classifier.bias": "head.bias",
    }.get(k, k)
    block = re.match(r"^layers\.(\d+)\.(.*)$", k)
    if block:
      index, rest = block.groups()
      for old, new in _HF_VIT_OLD:
        rest = new + rest[len(old) :] if rest.startswith(old) else rest
      proj = re.match(r"^attention\.([qkv])_proj\.weight$", rest)
      if proj:
        qkv.setdefault(index, {})[proj.group(1)] = (key, value)
        continue
      for old, new in _HF_VIT_BLOCK:
        rest = new + rest[len(old) :] if rest.startswith(old) else rest
      k = f"encoder.blocks.{index}.{rest}"
    out[k], names[k] = value, key
  for index, parts in qkv.items():
    key = f"encoder.blocks.{index}.attn.qkv.weight"
    out[key], names[key] = _fuse_qkv(parts, f"ViT layer {index}")
  return out, names


def _fuse_qkv(parts: dict[str, tuple[str, np.ndarray]], where: str) -> tuple[np.ndarray, str]:
  """{"q"|"k"|"v": (source key, torch weight [D, D])} -> (the fused `attn.qkv.weight` [3D, D], its name)."""
  if set(parts) != {"q", "k", "v"}:
    raise CheckpointError(f"{where} has only {sorted(parts)} of the query/key/value projections")
  name = re.sub(
    r"q_proj|query", lambda q: "{q,k,v}_proj" if q.group() == "q_proj" else "{query,key,value}", parts["q"][0]
  )
  return np.concatenate([parts[p][1] for p in "qkv"]), name


def inflate_patch_kernel(w: np.ndarray, frames: int, how: str) -> np.ndarray:
  """torch Conv2d weight [D, C, ph, pw] -> tubelet kernel [frames, ph, pw, C, D].

  "average": w / frames on every frame, so a still clip embeds as its image does; "central": w on
  frame frames // 2, zeros elsewhere.
  """
  if how not in INFLATIONS:
    raise ConfigError(f"--inflate must be one of {', '.join(INFLATIONS)}, not '{how}'")
  kernel = np.transpose(w, (2, 3, 1, 0))
  if how == "average":
    return np.repeat(kernel[None] / frames, frames, axis=0)
  out = np.zeros((frames, *kernel.shape), kernel.dtype)
  out[frames // 2] = kernel
  return out


def image_vit(m: Mapper, model, model_config, inflate: str) -> None:
  """A transformers image ViT / ViTMAE encoder (official-layout keys) into a jvssl video ViT (see `image_tower`)."""
  image_tower(m, model.encoder, inflate)
  # transformers' ViTs normalise every token, then read the CLS token; that is jvssl's final_norm="tokens".
  m.copy("encoder.norm.weight", ("params", "encoder", "norm", "scale"))
  m.copy("encoder.norm.bias", ("params", "encoder", "norm", "bias"))
  if m.exists(("params", "head", "kernel")) and m.has("head.weight"):
    if (model_config.pool, model_config.final_norm) != ("cls", "tokens"):
      raise CheckpointError(
        "a transformers ViT classifier reads its CLS token: set model.pool='cls' and model.final_norm='tokens'"
      )
    m.copy("head.weight", ("params", "head", "kernel"), linear_kernel)
    m.copy("head.bias", ("params", "head", "bias"))


def image_tower(m: Mapper, encoder, inflate: str) -> None:
  """The embeddings and blocks of an image ViT (official-layout keys under `encoder.`) into the jvssl video ViT
  `encoder` at params/encoder; its final norm is the caller's.

  The patch embedding is inflated to the config's tubelets (a missing patch bias, as CLIP's, is zero); the
  learned position table (its patch rows, resampled if the resolution differs) is repeated over the token
  frames; the CLS row of the table goes into the CLS token, which jvssl gives no position. The key bias is
  dropped: adding q . b_k to every logit of a query leaves its softmax unchanged.
  """
  grid = encoder.grid
  if not m.exists(("params", "encoder", "pos_embed")):
    raise ConfigError(
      "image ViT weights carry a learned (ViT) or 2-D sin-cos (ViTMAE) table: set model.pos_embed='learned'"
    )
  _, node, _ = m.target(("params", "encoder", "patch_embed"))
  pt = np.shape(node["patch_embed"])[0]
  m.copy(
    "encoder.patch_embed.proj.weight",
    ("params", "encoder", "patch_embed"),
    lambda w: inflate_patch_kernel(w, pt, inflate),
  )
  if m.has("encoder.patch_embed.proj.bias"):
    m.copy("encoder.patch_embed.proj.bias", ("params", "encoder", "patch_bias"))
  else:
    m.put(("params", "encoder", "patch_bias"), np.zeros(encoder.width, np.float32), "encoder.patch_embed.proj.weight")
  table = m.take("encoder.pos_embed").reshape(-1, encoder.width)
  cls_pos, patch_pos = table[0], table[1:]
  side = int(round(np.sqrt(len(patch_pos))))
  if side * side != len(patch_pos):
    raise CheckpointError(f"'{m.names.get('encoder.pos_embed')}' has {len(patch_pos)} patch rows, not a square grid")
  if (side, side) != tuple(grid[1:]):
    m.adapted.append(
      f"{m.names.get('encoder.pos_embed')} (resampled from {side}x{side} to {grid[1]}x{grid[2]} patches)"
    )
    patch_pos = layers.resize_pos_table(patch_pos, (1, side, side), (1, *grid[1:]))
  m.put(("params", "encoder", "pos_embed"), np.tile(patch_pos, (grid[0], 1)), "encoder.pos_embed")
  if m.exists(("params", "encoder", "cls_token")):
    m.copy("encoder.cls_token", ("params", "encoder", "cls_token"), lambda x: x.reshape(-1) + cls_pos)
  i = 0
  while m.has(f"encoder.blocks.{i}.norm1.weight"):
    map_block(m, f"encoder.blocks.{i}.", ("params", "encoder", "blocks", i))
    m.ignore(f"encoder.blocks.{i}.attn.k_bias")
    i += 1
  _, blocks, _ = m.target(("params", "encoder", "blocks"))
  if i != len(blocks["blocks"]):
    raise CheckpointError(
      f"the checkpoint has {i} encoder blocks, the config's model {len(blocks['blocks'])}: set model.depth to match"
    )


# ---- transformers CLIP ------------------------------------------------------------------------------


_CLIP_TOWER = (  # CLIP tower names (after `vision_model.` / `text_model.`) -> the official layout's.
  ("embeddings.class_embedding", "cls_token"),
  ("embeddings.patch_embedding.", "patch_embed.proj."),
  ("embeddings.position_embedding.weight", "pos_embed"),
  ("embeddings.token_embedding.weight", "token_embed"),
  ("pre_layrnorm.", "pre_norm."),
  ("post_layernorm.", "norm."),
  ("final_layer_norm.", "norm."),
)
_CLIP_BLOCK = (  # CLIP block names -> the official layout's.
  ("self_attn.q_proj.bias", "attn.q_bias"),
  ("self_attn.k_proj.bias", "attn.k_bias"),
  ("self_attn.v_proj.bias", "attn.v_bias"),
  ("self_attn.out_proj.", "attn.proj."),
  ("layer_norm1.", "norm1."),
  ("layer_norm2.", "norm2."),
)
_CLIP_SHARED = ("visual_projection.weight", "text_projection.weight", "logit_scale")


def hf_clip_to_official(source: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """Renames transformers' CLIPModel / CLIP{Vision,Text}Model[WithProjection] keys to the official layout: the
  vision tower under `encoder.` (as `hf_vit_to_official` writes, plus `encoder.pre_norm.`), the text tower under
  `text.` (`token_embed`, `pos_embed`, `blocks.i.`, `norm.`); `visual_projection.weight`,
  `text_projection.weight` and `logit_scale` keep their names. A bare CLIPTextModel's keys (transformers 5
  saves them without `text_model.`) are told from a bare CLIPVisionModel's by its token embedding.
  Returns (renamed arrays, {new key: original key}).
  """
  out, names, qkv = {}, {}, {}
  bare = "text." if "embeddings.token_embedding.weight" in source else "encoder."
  for key, value in source.items():
    if key in _CLIP_SHARED:
      out[key], names[key] = value, key
      continue
    tower, k = bare, key
    for prefix, renamed in (("vision_model.", "encoder."), ("text_model.", "text.")):
      if key.startswith(prefix):
        tower, k = renamed, key[len(prefix) :]
    for old, new in _CLIP_TOWER:
      k = new + k[len(old) :] if k.startswith(old) else k
    block = re.match(r"^encoder\.layers\.(\d+)\.(.*)$", k)
    if block:
      index, rest = block.groups()
      proj = re.match(r"^self_attn\.([qkv])_proj\.weight$", rest)
      if proj:
        qkv.setdefault(f"{tower}blocks.{index}.", {})[proj.group(1)] = (key, value)
        continue
      for old, new in _CLIP_BLOCK:
        rest = new + rest[len(old) :] if rest.startswith(old) else rest
      k = f"blocks.{index}.{rest}"
    out[tower + k], names[tower + k] = value, key
  for start, parts in qkv.items():
    out[start + "attn.qkv.weight"], names[start + "attn.qkv.weight"] = _fuse_qkv(parts, f"CLIP layer '{start}'")
  return out, names


def clip_vision(m: Mapper, encoder, model_config, inflate: str) -> None:
  """CLIP's vision tower (official-layout keys) into the jvssl video ViT `encoder` at params/encoder, and its
  visual projection into params/video_proj when the method has one (video_text).

  CLIP reads its CLS token through post_layernorm after a pre-norm of the embedded tokens: the config's model
  must say so (pool='cls', final_norm='pooled', pre_norm=True); the MLP activation and the norm epsilon are the
  checkpoint's config's (hidden_act, layer_norm_eps), which its weights do not tell.
  """
  wanted = {"pool": "cls", "final_norm": "pooled", "pre_norm": True, "pos_embed": "learned"}
  wrong = {k: v for k, v in wanted.items() if model_config[k] != v}
  if wrong:
    settings = " ".join(f"model.{k}={v!r}" for k, v in wrong.items())
    raise ConfigError(f"CLIP's vision tower reads its CLS token through a pre-norm and a pooled norm: set {settings}")
  image_tower(m, encoder, inflate)
  for name, leaf in (("weight", "scale"), ("bias", "bias")):
    m.copy(f"encoder.pre_norm.{name}", ("params", "encoder", "pre_norm", leaf))
    m.copy(f"encoder.norm.{name}", ("params", "encoder", "norm", leaf))
  if m.exists(("params", "video_proj", "kernel")):
    m.copy("visual_projection.weight", ("params", "video_proj", "kernel"), linear_kernel)


def clip_text(m: Mapper, text) -> None:
  """CLIP's text tower (official-layout keys) into the text.TextTransformer `text` at params/text, and its text
  projection into the transformer's own projection (text.projection_dim > 0) or else into params/text_proj when
  the method has one (video_text).

  CLIP's text model is causal and reads the end-of-text token, which its tokenizer writes as the highest id
  (pooling 'argmax'; 'eot' reads the same token when the padding id is another one). A position table longer
  than text.max_len is cut to its first rows, which is exact for sequences up to max_len.
  """
  if not text.causal or text.pooling not in ("argmax", "eot"):
    raise ConfigError(
      "CLIP's text tower is causal and reads its end-of-text token: set method.text.causal=True and"
      " method.text.pooling='argmax'"
    )
  m.copy("text.token_embed", ("params", "text", "token_embed"))
  table = m.take("text.pos_embed")
  if len(table) > text.max_len:
    m.adapted.append(f"{m.names.get('text.pos_embed')} (first {text.max_len} of {len(table)} positions)")
  m.put(("params", "text", "pos_embed"), table[: text.max_len], "text.pos_embed")
  i = 0
  while m.has(f"text.blocks.{i}.norm1.weight"):
    map_block(m, f"text.blocks.{i}.", ("params", "text", "blocks", i))
    m.ignore(f"text.blocks.{i}.attn.k_bias")
    i += 1
  if i != len(text.blocks):
    raise CheckpointError(
      f"the checkpoint has {i} text blocks, the config's text model {len(text.blocks)}: set its depth"
    )
  m.copy("text.norm.weight", ("params", "text", "norm", "scale"))
  m.copy("text.norm.bias", ("params", "text", "norm", "bias"))
  projection = ("params", "text", "proj", "kernel") if text.proj is not None else ("params", "text_proj", "kernel")
  if m.exists(projection):
    m.copy("text_projection.weight", projection, linear_kernel)


def clip(m: Mapper, model, model_config, inflate: str) -> None:
  """Whichever CLIP towers the checkpoint has into the method's `encoder` (a ViT) and `text` (a TextTransformer),
  with the projections and the logit scale where the method has them."""
  towers = 0
  if m.exists(("params", "encoder")) and m.has("encoder.cls_token"):
    if model_config.name != "vit":
      raise ConfigError(f"CLIP's vision tower needs model.name='vit', not '{model_config.name}'")
    clip_vision(m, model.encoder, model_config, inflate)
    towers += 1
  if m.exists(("params", "text")) and m.has("text.token_embed"):
    clip_text(m, model.text)
    towers += 1
  if not towers:
    raise CheckpointError("neither CLIP tower of the checkpoint has a place in this config's method (encoder, text)")
  # CLIP's one logit scale fits a method with one pair of towers; one with more (video-text-audio) keeps its own.
  if m.exists(("params", "logit_scale")) and m.has("logit_scale"):
    _, node, _ = m.target(("params", "logit_scale"))
    if np.size(node["logit_scale"]) == 1:
      m.copy("logit_scale", ("params", "logit_scale"), lambda x: x.reshape(np.shape(node["logit_scale"])))


# ---- torchvision 3D CNNs ---------------------------------------------------------------------------


def map_convbn(m: Mapper, conv_key: str, bn_key: str, dst: tuple) -> None:
  """torchvision Conv3d (no bias) + BatchNorm3d into a conv.ConvBN at `dst`."""
  m.copy(conv_key + ".weight", ("params", *dst, "conv", "kernel"), conv3d_kernel)
  m.copy(bn_key + ".weight", ("params", *dst, "norm", "scale"))
  m.copy(bn_key + ".bias", ("params", *dst, "norm", "bias"))
  m.copy(bn_key + ".running_mean", ("rest", *dst, "norm", "mean"))
  m.copy(bn_key + ".running_var", ("rest", *dst, "norm", "var"))
  m.ignore(bn_key + ".num_batches_tracked")  # Only used by momentum=None BatchNorm, never here.


def _units_names(prefix: str, n: int) -> list[tuple[str, str]]:
  """(conv, bn) key pairs of a torchvision conv unit: `p.0`/`p.1`, or Conv2Plus1D's `p.0.0`/`p.0.1`, `p.0.3`/`p.1`."""
  if n == 1:
    return [(prefix + ".0", prefix + ".1")]
  return [(prefix + ".0.0", prefix + ".0.1"), (prefix + ".0.3", prefix + ".1")]


def torchvision_resnet(m: Mapper, encoder) -> None:
  """torchvision VideoResNet (r3d_18, r2plus1d_18, mc3 layouts, bottleneck variants) into resnet3d.VideoResNet."""
  for i in range(len(encoder.stem)):
    map_convbn(m, f"stem.{3 * i}", f"stem.{3 * i + 1}", ("encoder", "stem", i))
  for s, stage in enumerate(encoder.layers):
    for b, block in enumerate(stage):
      src = f"layer{s + 1}.{b}."
      for p, part in enumerate(block.parts):
        for u, (ck, bk) in enumerate(_units_names(f"{src}conv{p + 1}", len(part))):
          map_convbn(m, ck, bk, ("encoder", "layers", s, b, "parts", p, u))
      if block.downsample is not None:
        map_convbn(m, src + "downsample.0", src + "downsample.1", ("encoder", "layers", s, b, "downsample"))
  if m.exists(("params", "head", "kernel")):
    m.copy("fc.weight", ("params", "head", "kernel"), linear_kernel)
    m.copy("fc.bias", ("params", "head", "bias"))


def torchvision_s3d(m: Mapper, encoder) -> None:
  """torchvision S3D into s3d.S3D (same `features` indices)."""
  from jvssl.models import conv, s3d

  def sep(src, dst):
    map_convbn(m, src + ".0.0", src + ".0.1", dst + ("spatial",))
    map_convbn(m, src + ".1.0", src + ".1.1", dst + ("temporal",))

  for i, layer in enumerate(encoder.features):
    src, dst = f"features.{i}", ("encoder", "features", i)
    if isinstance(layer, s3d.SepConv):
      sep(src, dst)
    elif isinstance(layer, conv.ConvBN):
      map_convbn(m, src + ".0", src + ".1", dst)
    elif isinstance(layer, s3d.Inception):
      map_convbn(m, src + ".branch0.0", src + ".branch0.1", dst + ("branch0",))
      for b in ("branch1", "branch2"):
        map_convbn(m, f"{src}.{b}.0.0", f"{src}.{b}.0.1", dst + (b, 0))
        sep(f"{src}.{b}.1", dst + (b, 1))
      map_convbn(m, src + ".branch3.1.0", src + ".branch3.1.1", dst + ("branch3", 1))
  if m.exists(("params", "head", "kernel")):
    # A 1x1x1 conv on features pooled to one position is a linear layer.
    m.copy("classifier.1.weight", ("params", "head", "kernel"), lambda w: w.reshape(w.shape[:2]).T)
    m.copy("classifier.1.bias", ("params", "head", "bias"))


def torchvision_mvit(m: Mapper, encoder) -> None:
  """torchvision MViT (mvit_v2_s layout: relative positions, residual pooling) into mvit.MViT."""
  enc = ("params", "encoder")
  m.copy("conv_proj.weight", enc + ("patch_embed", "kernel"), conv3d_kernel)
  m.copy("conv_proj.bias", enc + ("patch_embed", "bias"))
  m.copy("pos_encoding.class_token", enc + ("cls_token",))

  def dense(src, dst):
    m.copy(src + ".weight", dst + ("kernel",), linear_kernel)
    m.copy(src + ".bias", dst + ("bias",))

  def norm(src, dst):
    m.copy(src + ".weight", dst + ("scale",))
    m.copy(src + ".bias", dst + ("bias",))

  for i, block in enumerate(encoder.blocks):
    src, dst = f"blocks.{i}.", enc + ("blocks", i)
    norm(src + "norm1", dst + ("norm1",))
    norm(src + "norm2", dst + ("norm2",))
    dense(src + "attn.qkv", dst + ("attn", "qkv"))
    dense(src + "attn.project.0", dst + ("attn", "proj"))
    for pool in ("pool_q", "pool_k", "pool_v"):
      # Depthwise conv [C, 1, kt, kh, kw] -> [kt, kh, kw, 1, C].
      m.copy(f"{src}attn.{pool}.pool.weight", dst + ("attn", pool, "kernel"), lambda w: w.transpose(2, 3, 4, 1, 0))
      norm(f"{src}attn.{pool}.norm_act.0", dst + ("attn", pool, "norm"))
    for axis in "thw":
      m.copy_rel_pos(f"{src}attn.rel_pos_{axis}", dst + ("attn", f"rel_pos_{axis}"))
    dense(src + "mlp.0", dst + ("mlp", "fc1"))
    dense(src + "mlp.3", dst + ("mlp", "fc2"))
    if block.project is not None:
      dense(src + "project", dst + ("project",))
  norm("norm", enc + ("norm",))
  if m.exists(("params", "head", "kernel")):
    dense("head.1", ("params", "head"))


def convert(
  fmt: str, source: dict[str, np.ndarray], model, params: dict, rest: dict, model_config, inflate: str = "average"
) -> Report:
  """Fills `params`/`rest` (pure dicts of `model`, the method's module, modified in place) from `source`.

  inflate: how an image model's patch embedding becomes a tubelet one ("hf_vit", "clip"; see INFLATIONS).
  """
  if fmt not in FORMATS:
    raise ConfigError(f"--from must be one of {', '.join(FORMATS)}, not '{fmt}'")
  if fmt == "clip":
    source, names = hf_clip_to_official(source)
    m = Mapper(source, params, rest, names)
    clip(m, model, model_config, inflate)
    return m.report()
  if fmt == "hf_vit":
    if model_config.name != "vit":
      raise ConfigError(f"ViT checkpoints need model.name='vit', not '{model_config.name}'")
    source, names = hf_vit_to_official(source)
    m = Mapper(source, params, rest, names)
    image_vit(m, model, model_config, inflate)
    return m.report()
  if fmt in ("videomae", "hf_videomae"):
    if model_config.name != "vit":
      raise ConfigError(f"VideoMAE checkpoints need model.name='vit', not '{model_config.name}'")
    names = None
    if fmt == "hf_videomae":
      source, names = hf_to_official(source)
    m = Mapper(source, params, rest, names)
    official_videomae(m, model_config)
    return m.report()
  m = Mapper(source, params, rest)
  if model_config.name in ("r3d", "r2plus1d"):
    torchvision_resnet(m, model.encoder)
  elif model_config.name == "s3d":
    torchvision_s3d(m, model.encoder)
  elif model_config.name == "mvit":
    torchvision_mvit(m, model.encoder)
  else:
    raise ConfigError(f"no torchvision import for model '{model_config.name}' (known: r3d, r2plus1d, s3d, mvit)")
  return m.report()
