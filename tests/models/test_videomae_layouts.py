"""VideoMAE checkpoint layouts beyond the default: classifiers saved with use_mean_pooling=False (first-token
readout) and fixed sin-cos tables of another token count.

Tolerance as the other parity tests: max abs difference <= 1e-4 in float32 on CPU.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl.errors import CheckpointError
from jvssl.models import layers

from test_parity import TOL, _build, _hf_config, _max_diff, _vit_config
from torch_refs import import_torch, randomize, state_dict


def test_first_token_classifier_parity_and_refusal_with_mean_pooling():
  """Without fc_norm the classifier reads out token 0 after the token norm: supported with model.pool='first';
  with the mean-pooling model it would import cleanly and give wrong logits, so it is refused in one line."""
  torch = import_torch()
  transformers, hf = _hf_config(use_mean_pooling=False)
  ref = randomize(torch, transformers.VideoMAEForVideoClassification(hf))
  x = torch.randn(2, 4, 3, 32, 32)  # transformers: [B, T, C, H, W].
  with torch.no_grad():
    expected = ref(pixel_values=x).logits.numpy()
  sd = state_dict(ref)
  config = _vit_config("classify", "tokens", hf)
  config.model.pool = "first"
  model, report = _build(config, sd, "hf_videomae")
  assert report.unused == [] and report.kept == []
  got = nnx.jit(lambda m, v: m(v))(model, jnp.asarray(x.permute(0, 1, 3, 4, 2).numpy()))
  assert _max_diff(got, expected) <= TOL

  for final_norm in ("tokens", "pooled"):
    with pytest.raises(CheckpointError, match=r"use_mean_pooling=False.*set model.pool='first'"):
      _build(_vit_config("classify", final_norm, hf), sd, "hf_videomae", abstract=True)


def test_mean_pooling_classifier_is_refused_with_first_token_readout():
  torch = import_torch()
  transformers, hf = _hf_config(use_mean_pooling=True)
  config = _vit_config("classify", "pooled", hf)
  config.model.pool = "first"
  with pytest.raises(CheckpointError, match="mean-pools its tokens"):
    _build(config, state_dict(transformers.VideoMAEForVideoClassification(hf)), "hf_videomae", abstract=True)
  del torch


def test_sincos_table_of_another_token_count_is_recomputed():
  """An official checkpoint's fixed table for 2x4x4 tokens, imported into a model for 4x4x4: its own table."""
  torch = import_torch()
  transformers, hf = _hf_config(use_mean_pooling=False)
  sd = state_dict(transformers.VideoMAEForPreTraining(hf))
  sd["videomae.embeddings.position_embeddings"] = layers.sincos_table(32, 32)[None]
  config = _vit_config("videomae", "tokens", hf)
  config.data.num_frames = 8
  model, report = _build(config, sd, "hf_videomae")
  assert report.adapted == ["videomae.embeddings.position_embeddings (sin-cos table recomputed for 64 tokens, was 32)"]
  np.testing.assert_array_equal(model.encoder.pos_embed[...], layers.sincos_table(64, 32))
  sd["videomae.embeddings.position_embeddings"] = np.ones((1, 32, 32), np.float32)
  with pytest.raises(CheckpointError, match="not the fixed sinusoid table"):
    _build(config, sd, "hf_videomae", abstract=True)
  del torch
