"""Imported PyTorch weights reproduce the PyTorch models' outputs.

Reference models get random weights with non-zero biases, norm scales and BatchNorm
statistics, so a dropped bias, a swapped norm or a mistransposed kernel fails.
Tolerance: max abs difference <= 1e-4 in float32 on CPU (outputs are O(1)).
Skipped without the `convert` extra (torch, transformers; torchvision for the CNNs).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl import config as config_lib, registry
from jvssl.errors import CheckpointError
from jvssl.methods.base import RunLength
from jvssl.models import convert

from torch_refs import (
  import_torch as _torch,
  load_torchvision as _load_torchvision,
  randomize as _randomize,
  state_dict as _state_dict,
  torchvision_video as _torchvision_video,
)

TOL = 1e-4


def _build(config, source, fmt, *, abstract=False):
  """The method's module of `config` with `source` imported; returns (module, report).

  abstract: skip the random initialisation (slow for 30M-parameter CNNs), for sources
  that fill every array.
  """
  method = registry.METHODS.get(config.method.name)(config, RunLength(1, 1.0))
  model = nnx.eval_shape(lambda: method.build(nnx.Rngs(0))) if abstract else method.build(nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  pure_params, pure_rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  report = convert.convert(fmt, source, model, pure_params, pure_rest, config.model)
  nnx.replace_by_pure_dict(params, jax.tree.map(jnp.asarray, pure_params))
  nnx.replace_by_pure_dict(rest, jax.tree.map(jnp.asarray, pure_rest))
  return nnx.merge(graphdef, params, rest), report


def _max_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


# ---- torchvision CNNs ---------------------------------------------------------------------------


def _cnn_config(name, frames, size, num_classes=7):
  c = config_lib.base_config(model=name, method="classify")
  c.method.num_classes = num_classes
  c.data.num_frames, c.data.image_size = frames, size
  return c


@pytest.mark.parametrize("name,builder", [("r3d", "r3d_18"), ("r2plus1d", "r2plus1d_18")])
def test_torchvision_resnet_parity(name, builder):
  """Eval mode (running statistics), then train mode: normalised by batch statistics (biased
  variance) with running statistics moved as PyTorch moves them (unbiased variance)."""
  torch, video = _torch(), _torchvision_video()
  ref = _randomize(torch, getattr(video, builder)(num_classes=7))
  x = torch.randn(3, 3, 4, 32, 32)
  with torch.no_grad():
    expected = ref(x).numpy()
  model, report = _build(_cnn_config(name, 4, 32), _state_dict(ref), "torchvision", abstract=True)
  assert report.unused == [] and report.kept == [] and len(report.ignored) > 0
  video_in = jnp.asarray(x.permute(0, 2, 3, 4, 1).numpy())
  assert np.abs(expected).mean() > 0.1
  assert _max_diff(model(video_in), expected) <= TOL

  ref.train()
  with torch.no_grad():
    expected = ref(x).numpy()
  assert _max_diff(model.head(model.encoder(video_in, train=True)["pooled"]), expected) <= TOL
  bn = model.encoder.layers[3][1].parts[1][-1].norm
  torch_bn = ref.layer4[1].conv2[1]
  assert _max_diff(bn.mean[...], torch_bn.running_mean.numpy()) <= TOL
  assert _max_diff(bn.var[...], torch_bn.running_var.numpy()) <= TOL


def test_torchvision_s3d_parity():
  torch, video = _torch(), _torchvision_video()
  ref = _randomize(torch, video.s3d(num_classes=7))
  x = torch.randn(2, 3, 8, 32, 32)
  with torch.no_grad():
    features = ref.features(x)
    # torchvision's head on a clip whose features pool to one position: avgpool, 1x1x1 conv, mean.
    expected = ref.classifier(features.mean(dim=(2, 3, 4), keepdim=True)).flatten(1).numpy()
  model, report = _build(_cnn_config("s3d", 8, 32), _state_dict(ref), "torchvision", abstract=True)
  assert report.unused == [] and report.kept == []
  video_in = jnp.asarray(x.permute(0, 2, 3, 4, 1).numpy())
  tokens = model.encoder(video_in)["tokens"]
  assert model.encoder.grid == tuple(features.shape[2:])
  assert _max_diff(tokens, features.permute(0, 2, 3, 4, 1).reshape(2, -1, 1024).numpy()) <= TOL
  assert _max_diff(model(video_in), expected) <= TOL


# ---- VideoMAE -----------------------------------------------------------------------------------


def _hf_config(**kw):
  transformers = pytest.importorskip("transformers")
  _load_torchvision()  # transformers imports torchvision when it is installed.
  return transformers, transformers.VideoMAEConfig(
    image_size=32,
    patch_size=8,
    num_channels=3,
    num_frames=4,
    tubelet_size=2,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    decoder_num_attention_heads=2,
    decoder_hidden_size=16,
    decoder_num_hidden_layers=1,
    decoder_intermediate_size=64,
    num_labels=5,
    qkv_bias=True,
    **kw,
  )


def _vit_config(method, final_norm, hf):
  c = config_lib.base_config(model="vit", method=method)
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 32, 2, 2, 64
  c.model.patch_size = (2, 8, 8)
  c.model.final_norm = final_norm
  c.model.norm_eps = hf.layer_norm_eps
  c.data.num_frames, c.data.image_size = 4, 32
  if method == "classify":
    c.method.num_classes = 5
  else:
    c.method.decoder_width, c.method.decoder_depth, c.method.decoder_heads = 16, 1, 2
  return c


def _official_from_hf(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The official VideoMAE key layout, written out by hand from transformers' names."""
  out = {}
  encoder = "encoder." if "encoder_to_decoder.weight" in sd else ""
  for key, v in sd.items():
    k = key.replace("videomae.", "")
    if k.startswith("embeddings.patch_embeddings.projection."):
      out[encoder + "patch_embed.proj." + k.split(".")[-1]] = v
    elif k.startswith(("encoder.layer.", "decoder.decoder_layers.")):
      parts = k.split(".")
      block = ("encoder." if k.startswith("encoder") else "decoder.") if encoder else ""
      start = f"{block}blocks.{parts[2]}."
      rest = ".".join(parts[3:])
      names = {
        "layernorm_before.weight": "norm1.weight",
        "layernorm_before.bias": "norm1.bias",
        "layernorm_after.weight": "norm2.weight",
        "layernorm_after.bias": "norm2.bias",
        "intermediate.dense.weight": "mlp.fc1.weight",
        "intermediate.dense.bias": "mlp.fc1.bias",
        "output.dense.weight": "mlp.fc2.weight",
        "output.dense.bias": "mlp.fc2.bias",
        "attention.output.dense.weight": "attn.proj.weight",
        "attention.output.dense.bias": "attn.proj.bias",
        "attention.attention.query.bias": "attn.q_bias",
        "attention.attention.value.bias": "attn.v_bias",
      }
      if rest == "attention.attention.query.weight":
        prefix = f"{'videomae.' if key.startswith('videomae.') else ''}{'.'.join(parts[:3])}.attention.attention."
        out[start + "attn.qkv.weight"] = np.concatenate(
          [sd[prefix + "query.weight"], sd[prefix + "key.weight"], sd[prefix + "value.weight"]]
        )
      elif rest in names:
        out[start + names[rest]] = v
    elif k.startswith("layernorm."):
      out[encoder + "norm." + k.split(".")[-1]] = v
    elif k.startswith("classifier."):
      out["head." + k.split(".")[-1]] = v
    else:  # fc_norm.*, encoder_to_decoder.weight, mask_token, decoder.norm.*, decoder.head.*
      out[k] = v
  return out


def _save_official(torch, tmp_path, sd, wrap):
  path = tmp_path / "official.pth"
  tensors = {k: torch.from_numpy(v) for k, v in sd.items()}
  torch.save({wrap: tensors, "epoch": 3, "args": argparse.Namespace(model="vit_tiny")}, path)
  return convert.load_state_dict(str(path))


@pytest.mark.parametrize("layout", ["hf", "official"])
def test_videomae_classifier_parity(layout, tmp_path):
  torch = _torch()
  transformers, hf = _hf_config(use_mean_pooling=True)
  ref = _randomize(torch, transformers.VideoMAEForVideoClassification(hf))
  x = torch.randn(2, 4, 3, 32, 32)  # transformers: [B, T, C, H, W].
  with torch.no_grad():
    expected = ref(pixel_values=x).logits.numpy()
  sd = _state_dict(ref)
  if layout == "official":
    source, fmt = _save_official(torch, tmp_path, _official_from_hf(sd), "module"), "videomae"
    assert "fc_norm.weight" in source and "blocks.0.attn.q_bias" in source
  else:
    source, fmt = sd, "hf_videomae"
  model, report = _build(_vit_config("classify", "pooled", hf), source, fmt)
  assert report.unused == [] and report.kept == []
  got = model(jnp.asarray(x.permute(0, 1, 3, 4, 2).numpy()))
  assert _max_diff(got, expected) <= TOL


@pytest.mark.parametrize("layout", ["hf", "official"])
def test_videomae_pretraining_parity(layout, tmp_path):
  torch = _torch()
  transformers, hf = _hf_config(use_mean_pooling=False, norm_pix_loss=True)
  ref = _randomize(torch, transformers.VideoMAEForPreTraining(hf))
  x = torch.randn(2, 4, 3, 32, 32)
  spatial = torch.zeros(2, 16, dtype=torch.bool)
  spatial[0, [1, 4, 5, 9, 12, 15]] = True
  spatial[1, [0, 2, 3, 7, 8, 14]] = True
  masked_pos = spatial.repeat(1, 2)  # Tube mask over the 2 token frames.
  with torch.no_grad():
    expected = ref(pixel_values=x, bool_masked_pos=masked_pos).logits.numpy()
  sd = _state_dict(ref)
  if layout == "official":
    source, fmt = _save_official(torch, tmp_path, _official_from_hf(sd), "model"), "videomae"
    assert "encoder.norm.weight" in source and "decoder.blocks.0.attn.qkv.weight" in source
  else:
    source, fmt = sd, "hf_videomae"
  model, report = _build(_vit_config("videomae", "tokens", hf), source, fmt)
  assert report.unused == [] and report.kept == []
  idx = np.arange(32)
  visible = jnp.asarray(np.stack([idx[~m.numpy()] for m in masked_pos]), jnp.int32)
  masked = jnp.asarray(np.stack([idx[m.numpy()] for m in masked_pos]), jnp.int32)
  got = model(jnp.asarray(x.permute(0, 1, 3, 4, 2).numpy()), visible, masked)
  assert _max_diff(got, expected) <= TOL


def test_old_transformers_bias_names_and_pretraining_into_classifier():
  """transformers < 5 named the biases q_bias/v_bias: both spellings import the same values. A
  pretraining checkpoint fine-tunes: the decoder and the token norm are reported unused, the head kept."""
  torch = _torch()
  transformers, hf = _hf_config(use_mean_pooling=False)
  sd = _state_dict(_randomize(torch, transformers.VideoMAEForPreTraining(hf)))
  old = {k.replace("query.bias", "q_bias").replace("value.bias", "v_bias"): v for k, v in sd.items()}
  assert any(k.endswith("attention.attention.q_bias") for k in old)
  new_model, _ = _build(_vit_config("videomae", "tokens", hf), sd, "hf_videomae")
  old_model, _ = _build(_vit_config("videomae", "tokens", hf), old, "hf_videomae")
  q_bias = old_model.encoder.blocks[1].attn.q_bias[...]
  assert float(jnp.abs(q_bias).max()) > 0
  np.testing.assert_array_equal(q_bias, new_model.encoder.blocks[1].attn.q_bias[...])
  _, report = _build(_vit_config("classify", "pooled", hf), sd, "hf_videomae")
  assert "videomae.layernorm.weight" in report.unused and "decoder.head.weight" in report.unused
  assert report.kept == [
    "params/encoder/norm/bias",
    "params/encoder/norm/scale",
    "params/head/bias",
    "params/head/kernel",
  ]


def test_shape_mismatch_names_the_key():
  torch = _torch()
  transformers, hf = _hf_config(use_mean_pooling=True)
  sd = _state_dict(transformers.VideoMAEForVideoClassification(hf))
  config = _vit_config("classify", "pooled", hf)
  config.model.mlp_dim = 96
  with pytest.raises(CheckpointError, match="intermediate.dense.weight|mlp.fc1.weight"):
    _build(config, sd, "hf_videomae")
  del torch
