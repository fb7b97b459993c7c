"""V-JEPA 2's 3-D rotary position embedding: the same rotation as transformers' VJEPA2RopeAttention,
and a ViT with pos_embed='rope' carries positions in the ids it is given, not in the token order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl.models import layers

from torch_refs import load_torchvision


@pytest.mark.parametrize("head_dim", [48, 40])  # 3 x 16 channels turned; 3 x 12 turned and 4 left as they are.
def test_rope_3d_is_vjepa2s(head_dim):
  torch = pytest.importorskip("torch")
  pytest.importorskip("transformers")
  load_torchvision()  # transformers imports torchvision when it is installed.
  from transformers import VJEPA2Config
  from transformers.models.vjepa2 import modeling_vjepa2 as vjepa2

  grid = (4, 3, 3)  # frames_per_clip 8 / tubelet 2, crop 48 / patch 16.
  heads = 2
  config = VJEPA2Config(crop_size=48, patch_size=16, frames_per_clip=8, tubelet_size=2, hidden_size=heads * head_dim)
  attention = vjepa2.VJEPA2RopeAttention(config, hidden_size=heads * head_dim, num_attention_heads=heads)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 10, heads, head_dim)).astype(np.float32)  # [B, N, H, Dh]
  ids = np.stack([rng.choice(int(np.prod(grid)), 10, replace=False) for _ in range(2)])
  with torch.no_grad():
    torch_x = torch.from_numpy(x).transpose(1, 2)  # VJEPA2 rotates [B, H, N, Dh].
    position_ids = attention.get_position_ids(torch_x, masks=torch.from_numpy(ids))
    expected = attention.apply_rotary_embeddings(torch_x, position_ids).transpose(1, 2).numpy()
  ours = np.asarray(jax.jit(layers.rope_3d, static_argnums=2)(x, ids, grid))
  np.testing.assert_allclose(ours, expected, atol=1e-5)


def _rope_vit(rngs):
  from jvssl import config as config_lib, models

  c = config_lib.load("configs/masked_synthetic.py:vjepa2,runlocal")
  return models.build(c, rngs=rngs), c


def test_rope_vit_has_no_table_and_follows_the_ids():
  model, c = _rope_vit(nnx.Rngs(0))
  assert model.rope and not hasattr(model, "pos_embed")
  n = model.num_tokens
  tokens = jax.random.normal(jax.random.key(1), (1, n, model.width))
  ids = jnp.arange(n)[None]
  out = model.encode(tokens, ids=ids)
  # Shuffling the tokens together with their ids shuffles the outputs: the position is in the ids.
  order = jax.random.permutation(jax.random.key(2), n)
  np.testing.assert_allclose(model.encode(tokens[:, order], ids=ids[:, order]), out[:, order], atol=1e-5)
  # The same tokens at other positions give other outputs.
  assert np.abs(model.encode(tokens[:, order], ids=ids) - out[:, order]).max() > 1e-3


def test_rope_with_a_cls_token_is_refused():
  from jvssl import config as config_lib, models

  c = config_lib.load("configs/masked_synthetic.py:vjepa2,runlocal", ["model.pool=cls"])
  with pytest.raises(ValueError, match="no CLS token"):
    models.build(c, rngs=nnx.Rngs(0))
