"""transformers CLIP weights (`--from=clip`) in jvssl's text transformer and video ViT reproduce CLIP's embeddings.

The vision tower sees an image as a still clip of one token frame (the image repeated over one tubelet), so
with either inflation every output is the image model's. The text tower reads the same token ids, padded
with 0 (which is also text: CLIP's "!") after the end-of-text id, the highest id of the vocabulary.
Tolerance: max abs difference <= 1e-4 in float32 on CPU (outputs are O(1)).
Skipped without the `convert` extra (torch, transformers).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl import config as config_lib, registry
from jvssl.errors import ConfigError
from jvssl.methods.base import RunLength
from jvssl.models import convert, text, vit

from torch_refs import import_torch, load_torchvision, randomize, state_dict

TOL = 1e-4
SIZE, PATCH, WIDTH, PROJ, VOCAB, MAX_LEN = 32, 8, 32, 16, 259, 16
BOS, EOS = VOCAB - 2, VOCAB - 1
# Right-padded with 0 after the end-of-text id; the first row has a 0 ("!") inside its text.
IDS = np.array([[BOS, 5, 0, 33, 70, EOS, 0, 0, 0, 0], [BOS, 12, EOS, 0, 0, 0, 0, 0, 0, 0]], np.int64)
TEXT = np.arange(IDS.shape[1])[None] <= np.argmax(IDS == EOS, axis=1)[:, None]


def _transformers():
  transformers = pytest.importorskip("transformers")
  load_torchvision()  # transformers imports torchvision when it is installed.
  return transformers


def _hf_text(transformers):
  return transformers.CLIPTextConfig(
    vocab_size=VOCAB,
    hidden_size=WIDTH,
    intermediate_size=4 * WIDTH,  # The text model's mlp_ratio 4.
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=MAX_LEN,
    projection_dim=PROJ,
    pad_token_id=0,
    bos_token_id=BOS,
    eos_token_id=EOS,
  )


def _hf_vision(transformers):
  return transformers.CLIPVisionConfig(
    image_size=SIZE,
    patch_size=PATCH,
    hidden_size=WIDTH,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    projection_dim=PROJ,
  )


def _vit_config(frames, tubelet):
  """A video_text run whose towers are CLIP's: the settings `convert.clip_vision` / `clip_text` ask for."""
  c = config_lib.base_config(model="vit", method="video_text")
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = WIDTH, 2, 2, 64
  c.model.patch_size = (tubelet, PATCH, PATCH)
  c.model.update(
    pos_embed="learned", qkv_bias="all", pool="cls", final_norm="pooled", pre_norm=True, activation="quick_gelu"
  )
  c.model.norm_eps = 1e-5
  c.data.num_frames, c.data.image_size = frames, SIZE
  c.method.embed_dim = PROJ
  c.data.text.max_len = MAX_LEN
  c.method.text.update(width=WIDTH, depth=2, num_heads=2, max_len=MAX_LEN, activation="quick_gelu", pooling="argmax")
  return c


def _fill(model, source, model_config, inflate="average"):
  """`model` with `source` converted into its parameters, and the conversion's report. The converter sees the
  model's abstract copy, as `jvssl.tools.import_weights` gives it."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  pure_params, pure_rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  abstract = nnx.eval_shape(lambda: nnx.merge(graphdef, params, rest))
  report = convert.convert("clip", source, abstract, pure_params, pure_rest, model_config, inflate)
  nnx.replace_by_pure_dict(params, jax.tree.map(jnp.asarray, pure_params))
  nnx.replace_by_pure_dict(rest, jax.tree.map(jnp.asarray, pure_rest))
  return nnx.merge(graphdef, params, rest), report


def _video_text(config, source, inflate="average"):
  method = registry.METHODS.get(config.method.name)(config, RunLength(1, 1.0))
  return _fill(method.build(nnx.Rngs(0)), source, config.model, inflate)


class TextOnly(nnx.Module):
  def __init__(self, config):
    self.text = text.TextTransformer(config, vocab_size=VOCAB, pad_id=0, rngs=nnx.Rngs(0))


def _still_clip(x, frames):
  """torch images [B, 3, H, W] -> jvssl clip [B, frames, H, W, 3] of the image repeated."""
  return jnp.asarray(np.repeat(x.permute(0, 2, 3, 1).numpy()[:, None], frames, axis=1))


def _max_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


@pytest.mark.parametrize("pooling", ["argmax", "eot"])
def test_text_tower_parity(pooling):
  torch, transformers = import_torch(), _transformers()
  ref = randomize(torch, transformers.CLIPTextModelWithProjection(_hf_text(transformers)))
  # 'eot' takes every 0 for padding, so its text has none.
  ids = IDS if pooling == "argmax" else np.where(TEXT & (IDS == 0), 1, IDS)
  with torch.no_grad():
    out = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(TEXT.astype(np.int64)))
  config = text.default_config()
  config.update(width=WIDTH, depth=2, num_heads=2, max_len=MAX_LEN, activation="quick_gelu", projection_dim=PROJ)
  config.pooling = pooling
  model, report = _fill(TextOnly(config), state_dict(ref), vit.ViT.default_config())
  assert report.unused == [] and report.kept == [] and len(report.ignored) == 2  # The two key biases.
  got = model.text(jnp.asarray(ids, jnp.int32))
  np.testing.assert_array_equal(got["mask"], TEXT)
  assert _max_diff(got["pooled"], out.text_embeds) <= TOL
  assert (
    _max_diff(np.where(TEXT[..., None], got["tokens"], 0), np.where(TEXT[..., None], out.last_hidden_state, 0)) <= TOL
  )


@pytest.mark.parametrize("frames,tubelet,inflate", [(1, 1, "average"), (2, 2, "average"), (2, 2, "central")])
def test_vision_tower_parity(frames, tubelet, inflate):
  torch, transformers = import_torch(), _transformers()
  ref = randomize(torch, transformers.CLIPVisionModelWithProjection(_hf_vision(transformers)))
  x = torch.randn(2, 3, SIZE, SIZE)
  with torch.no_grad():
    out = ref(pixel_values=x)
  config = _vit_config(frames, tubelet)
  model, report = _video_text(config, state_dict(ref), inflate)
  assert report.unused == [] and len(report.ignored) == 2
  assert report.kept and all(
    k.startswith(("params/text/", "params/text_proj/", "params/logit_scale")) for k in report.kept
  )
  got = model.encoder(_still_clip(x, frames))
  assert _max_diff(got["pooled"], ref.vision_model.post_layernorm(out.last_hidden_state[:, 0]).detach()) <= TOL
  assert _max_diff(model.video_proj(got["pooled"]), out.image_embeds) <= TOL
  assert _max_diff(got["tokens"], out.last_hidden_state[:, 1:]) <= TOL


def test_whole_clip_model_into_video_text():
  torch, transformers = import_torch(), _transformers()
  hf = transformers.CLIPConfig(
    text_config=_hf_text(transformers).to_dict(), vision_config=_hf_vision(transformers).to_dict(), projection_dim=PROJ
  )
  ref = randomize(torch, transformers.CLIPModel(hf))
  x = torch.randn(2, 3, SIZE, SIZE)
  with torch.no_grad():
    out = ref(input_ids=torch.from_numpy(IDS), pixel_values=x, attention_mask=torch.from_numpy(TEXT.astype(np.int64)))
  model, report = _video_text(_vit_config(2, 2), state_dict(ref))
  assert report.unused == [] and report.kept == [] and len(report.ignored) == 4
  video, texts = model.joint_video(_still_clip(x, 2)), model.joint_text(jnp.asarray(IDS, jnp.int32))
  assert _max_diff(video, out.image_embeds) <= TOL
  assert _max_diff(texts, out.text_embeds) <= TOL
  assert _max_diff(np.exp(model.logit_scale[0]) * video @ texts.T, out.logits_per_image) <= 10 * TOL


def test_clip_needs_the_clip_vision_layout():
  torch, transformers = import_torch(), _transformers()
  sd = state_dict(randomize(torch, transformers.CLIPVisionModelWithProjection(_hf_vision(transformers))))
  config = _vit_config(1, 1)
  config.model.pre_norm = False
  with pytest.raises(ConfigError, match="pre_norm=True"):
    _video_text(config, sd)
