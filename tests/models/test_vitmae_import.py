"""transformers image ViT / ViTMAE weights in jvssl's video ViT (`--from=hf_vit`) reproduce transformers' outputs.

An image repeated over the frames of one tubelet is a still clip of one token frame: with either
inflation each tubelet embeds as the image's patch does, so every output is the image model's.
(With several token frames the CLS token would be outweighed by the repeated patches in every
softmax, so longer clips are checked on the imported tables.)
Tolerance: max abs difference <= 1e-4 in float32 on CPU (outputs are O(1)).
Skipped without the `convert` extra (torch, transformers).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl import config as config_lib, registry
from jvssl.methods.base import RunLength
from jvssl.models import convert

from torch_refs import import_torch, load_torchvision, randomize, state_dict

TOL = 1e-4
SIZE, PATCH, WIDTH = 32, 8, 32


def _transformers():
  transformers = pytest.importorskip("transformers")
  load_torchvision()  # transformers imports torchvision when it is installed.
  return transformers


def _hf_kw(hf):
  return dict(
    image_size=SIZE,
    patch_size=PATCH,
    hidden_size=WIDTH,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    qkv_bias=True,
    hidden_act="gelu",
  )


def _config(hf_config, frames, tubelet, method="classify"):
  c = config_lib.base_config(model="vit", method=method)
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = WIDTH, 2, 2, 64
  c.model.patch_size = (tubelet, PATCH, PATCH)
  c.model.pos_embed, c.model.qkv_bias, c.model.pool, c.model.final_norm = "learned", "qv", "cls", "tokens"
  c.model.norm_eps = hf_config.layer_norm_eps
  c.data.num_frames, c.data.image_size = frames, SIZE
  if method == "classify":
    c.method.num_classes = 5
  return c


def _build(config, source, inflate):
  method = registry.METHODS.get(config.method.name)(config, RunLength(1, 1.0))
  model = method.build(nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  pure_params, pure_rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  report = convert.convert("hf_vit", source, model, pure_params, pure_rest, config.model, inflate)
  nnx.replace_by_pure_dict(params, jax.tree.map(jnp.asarray, pure_params))
  nnx.replace_by_pure_dict(rest, jax.tree.map(jnp.asarray, pure_rest))
  return nnx.merge(graphdef, params, rest), report


def _still_clip(x, frames):
  """torch images [B, 3, H, W] -> jvssl clip [B, frames, H, W, 3] of the image repeated."""
  image = x.permute(0, 2, 3, 1).numpy()
  return jnp.asarray(np.repeat(image[:, None], frames, axis=1))


def _max_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


@pytest.mark.parametrize("inflate", ["average", "central"])
@pytest.mark.parametrize("frames,tubelet", [(1, 1), (2, 2)])
def test_vit_classifier_parity(inflate, frames, tubelet):
  torch, transformers = import_torch(), _transformers()
  hf = transformers.ViTConfig(num_labels=5, **_hf_kw(transformers))
  ref = randomize(torch, transformers.ViTForImageClassification(hf))
  x = torch.randn(2, 3, SIZE, SIZE)
  with torch.no_grad():
    out = ref(pixel_values=x, output_hidden_states=True)
    expected_logits = out.logits.numpy()
    expected_tokens = ref.vit.layernorm(out.hidden_states[-1]).numpy()
  model, report = _build(_config(hf, frames, tubelet), state_dict(ref), inflate)
  assert report.unused == [] and report.kept == []
  assert len(report.ignored) == 2  # The two layers' key biases.
  clip = _still_clip(x, frames)
  assert _max_diff(model(clip), expected_logits) <= TOL
  assert _max_diff(model.encoder(clip)["tokens"], expected_tokens[:, 1:]) <= TOL


def test_longer_clips_repeat_the_position_table_over_time():
  torch, transformers = import_torch(), _transformers()
  hf = transformers.ViTConfig(**_hf_kw(transformers))
  sd = state_dict(randomize(torch, transformers.ViTModel(hf, add_pooling_layer=False)))
  model, report = _build(_config(hf, 8, 2), {"vit." + k: v for k, v in sd.items()}, "central")
  table = sd["embeddings.position_embeddings"][0]
  np.testing.assert_array_equal(model.encoder.pos_embed[...], np.tile(table[1:], (4, 1)))
  np.testing.assert_allclose(model.encoder.cls_token[...], sd["embeddings.cls_token"].reshape(-1) + table[0], atol=1e-7)
  assert report.kept == ["params/head/bias", "params/head/kernel"]


def test_vitmae_encoder_parity():
  torch, transformers = import_torch(), _transformers()
  hf = transformers.ViTMAEConfig(
    mask_ratio=0.0, decoder_hidden_size=16, decoder_num_hidden_layers=1, **_hf_kw(transformers)
  )
  ref = randomize(torch, transformers.ViTMAEForPreTraining(hf))
  x = torch.randn(2, 3, SIZE, SIZE)
  noise = torch.arange(16, dtype=torch.float32).repeat(2, 1)  # Ascending noise keeps the tokens in order.
  with torch.no_grad():
    expected = ref.vit(pixel_values=x, noise=noise).last_hidden_state.numpy()
  sd = state_dict(ref)
  model, report = _build(_config(hf, 2, 2), sd, "average")
  assert any(k.startswith("decoder.") for k in report.unused)
  assert not [k for k in report.unused if not k.startswith("decoder.")]
  assert report.kept == ["params/head/bias", "params/head/kernel"]
  got = model.encoder(_still_clip(x, 2))
  assert _max_diff(got["pooled"], expected[:, 0]) <= TOL
  assert _max_diff(np.asarray(got["tokens"])[:, :16], expected[:, 1:]) <= TOL


def test_central_inflation_embeds_the_central_frame():
  w = np.random.default_rng(0).normal(size=(WIDTH, 3, PATCH, PATCH)).astype(np.float32)
  central = convert.inflate_patch_kernel(w, 3, "central")
  average = convert.inflate_patch_kernel(w, 3, "average")
  assert central.shape == average.shape == (3, PATCH, PATCH, 3, WIDTH)
  np.testing.assert_array_equal(central[1], w.transpose(2, 3, 1, 0))
  assert not central[0].any() and not central[2].any()
  np.testing.assert_allclose(average.sum(0), w.transpose(2, 3, 1, 0), atol=1e-6)


def _old_names(key: str) -> str:
  """transformers 5's ViT key -> the name transformers 4 (and most Hub files) gave it."""
  for new, old in (
    ("vit.layers.", "vit.encoder.layer."),
    ("attention.q_proj.", "attention.attention.query."),
    ("attention.k_proj.", "attention.attention.key."),
    ("attention.v_proj.", "attention.attention.value."),
    ("attention.o_proj.", "attention.output.dense."),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
  ):
    key = key.replace(new, old)
  return key


def test_transformers_4_names_import_the_same_weights():
  torch, transformers = import_torch(), _transformers()
  hf = transformers.ViTConfig(num_labels=5, **_hf_kw(transformers))
  sd = state_dict(randomize(torch, transformers.ViTForImageClassification(hf)))
  old = {_old_names(k): v for k, v in sd.items()}
  assert (
    "vit.encoder.layer.1.attention.attention.query.weight" in old and "vit.encoder.layer.0.output.dense.bias" in old
  )
  new_model, _ = _build(_config(hf, 2, 2), sd, "average")
  old_model, report = _build(_config(hf, 2, 2), old, "average")
  assert report.unused == [] and report.kept == []
  for a, b in zip(jax.tree.leaves(nnx.state(new_model, nnx.Param)), jax.tree.leaves(nnx.state(old_model, nnx.Param))):
    np.testing.assert_array_equal(a, b)
