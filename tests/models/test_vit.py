import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl import config as config_lib, models
from jvssl.methods.classify import Classifier
from jvssl.models import layers


def _count(module) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _vit_config(variant, num_classes=400):
  c = config_lib.base_config(model="vit", method="classify")
  c.model.variant = variant
  c.model.final_norm = "pooled"
  c.data.num_frames, c.data.image_size = 16, 224
  c.method.num_classes = num_classes
  return c


# VideoMAE ViT-S/B on 16x224x224 with tubelets 2x16x16 and a 400-class head:
# the papers' 22M and 87M (Hugging Face lists VideoMAE-B fine-tuned on K400 at 86.5M).
@pytest.mark.parametrize(
  "variant,encoder,classifier,published",
  [
    ("S", 21_879_936, 22_033_936, 22),
    ("B", 86_227_200, 86_534_800, 87),
  ],
)
def test_parameter_counts_match_published(variant, encoder, classifier, published):
  config = _vit_config(variant)
  abstract = nnx.eval_shape(lambda: Classifier(config, rngs=nnx.Rngs(0)))
  assert _count(abstract.encoder) == encoder
  assert _count(abstract) == classifier
  assert round(classifier / 1e6) == published


def test_forward_shapes_and_token_order():
  c = config_lib.base_config()
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 32, 2, 2, 64
  c.model.patch_size = (2, 8, 8)
  c.data.num_frames, c.data.image_size = 4, 16
  model = models.build(c, rngs=nnx.Rngs(0))
  video = jax.random.normal(jax.random.key(0), (3, 4, 16, 16, 3))
  out = model(video)
  assert model.grid == (2, 2, 2)
  assert out["tokens"].shape == (3, 8, 32) and out["pooled"].shape == (3, 32)
  # Token (t, h, w) is the tubelet at frames 2t:2t+2, rows 8h:8h+8, cols 8w:8w+8, like Conv3d's flatten.
  tokens = model.embed(video) - model.pos_embed[...]
  kernel = model.patch_embed[...].reshape(-1, 32)
  tubelet = video[:, 2:4, 8:16, 0:8].reshape(3, -1)
  np.testing.assert_allclose(tokens[:, 1 * 4 + 1 * 2 + 0], tubelet @ kernel + model.patch_bias[...], atol=1e-5)


def test_sincos_table_is_videomae_layout():
  table = layers.sincos_table(5, 8)
  assert table.shape == (5, 8)
  np.testing.assert_allclose(table[3, 0], np.sin(3.0))
  np.testing.assert_allclose(table[3, 1], np.cos(3.0))
  np.testing.assert_allclose(table[2, 4], np.sin(2 / 10000 ** (4 / 8)), rtol=1e-6)


def test_qv_bias_has_no_key_bias():
  attn = layers.Attention(16, 2, qkv_bias="qv", rngs=nnx.Rngs(0))
  attn.q_bias[...] = jnp.ones_like(attn.q_bias[...])
  attn.v_bias[...] = 2 * jnp.ones_like(attn.v_bias[...])
  bias = attn.qkv_bias_value()
  assert float(bias[0].min()) == 1.0 and float(jnp.abs(bias[1]).max()) == 0.0 and float(bias[2].min()) == 2.0


def test_bfloat16_compute_keeps_float32_params():
  c = config_lib.base_config()
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 32, 1, 2, 64
  c.model.patch_size = (2, 8, 8)
  c.data.num_frames, c.data.image_size = 2, 8
  c.train.compute_dtype = "bfloat16"
  model = models.build(c, rngs=nnx.Rngs(0))
  out = model(jnp.ones((1, 2, 8, 8, 3)))
  assert out["tokens"].dtype == jnp.bfloat16
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _tiny(**model):
  c = config_lib.base_config()
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 16, 1, 2, 32
  c.model.patch_size = (1, 4, 4)
  c.data.num_frames, c.data.image_size = 3, 8
  for k, v in model.items():
    c.model[k] = v
  return c


def test_factorised_attention_is_spatial_then_temporal():
  block = layers.FactorisedBlock(16, 2, 32, num_frames=3, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (1, 3 * 4, 16))  # 3 frames x 4 positions, (t s) order.
  frame1 = x.at[:, 4:8].add(1.0)
  position3 = x.at[:, 3::4].add(1.0)
  # Temporal branch off: a frame's outputs depend on that frame only.
  block.attn_t.proj[...] = jnp.zeros_like(block.attn_t.proj[...])
  block.attn_t.proj_bias[...] = jnp.zeros_like(block.attn_t.proj_bias[...])
  np.testing.assert_allclose(block(frame1)[:, :4], block(x)[:, :4], atol=1e-6)
  assert float(jnp.abs(block(frame1)[:, 8:] - block(x)[:, 8:]).max()) == 0.0
  # Spatial branch off instead: a position's outputs depend on that position (in every frame) only.
  block = layers.FactorisedBlock(16, 2, 32, num_frames=3, rngs=nnx.Rngs(0))
  block.attn.proj[...] = jnp.zeros_like(block.attn.proj[...])
  block.attn.proj_bias[...] = jnp.zeros_like(block.attn.proj_bias[...])
  changed = jnp.abs(block(position3) - block(x)).max(axis=(0, 2)).reshape(3, 4)
  assert float(changed[:, :3].max()) == 0.0 and float(changed[:, 3].min()) > 0


def test_factorised_vit_runs_and_counts_one_more_attention_per_block():
  joint = models.build(_tiny(), rngs=nnx.Rngs(0))
  factorised = models.build(_tiny(attention="factorised"), rngs=nnx.Rngs(0))
  out = factorised(jnp.ones((2, 3, 8, 8, 3)))
  assert out["tokens"].shape == (2, 12, 16)
  # qkv [16, 3, 2, 8], q and v biases, proj [2, 8, 16] and its bias, plus the temporal LayerNorm.
  per_attention = 16 * 48 + 2 * 16 + 16 * 16 + 16 + 2 * 16
  count = lambda m: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
  assert count(factorised) == count(joint) + per_attention


def test_cls_readout():
  model = models.build(_tiny(pool="cls"), rngs=nnx.Rngs(0))
  video = jax.random.normal(jax.random.key(1), (2, 3, 8, 8, 3))
  out = model(video)
  assert out["tokens"].shape == (2, 12, 16) and out["pooled"].shape == (2, 16)
  assert float(jnp.abs(out["pooled"] - out["tokens"].mean(axis=1)).max()) > 1e-3
  model.cls_token[...] = jax.random.normal(jax.random.key(2), (16,))
  assert float(jnp.abs(model(video)["pooled"] - out["pooled"]).max()) > 1e-3
  with pytest.raises(ValueError, match="CLS"):
    models.build(_tiny(pool="cls", attention="factorised"), rngs=nnx.Rngs(0))


@pytest.mark.parametrize("policy", ["full", "dots_no_batch"])
def test_remat_policies_keep_gradients(policy):
  video = jax.random.normal(jax.random.key(1), (2, 3, 8, 8, 3))

  def grads(config):
    model = models.build(config, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss = lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(video)["pooled"] ** 2)
    return jax.grad(loss)(params)

  for a, b in zip(jax.tree.leaves(grads(_tiny(remat=policy))), jax.tree.leaves(grads(_tiny()))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="remat"):
    models.build(_tiny(remat="yes"), rngs=nnx.Rngs(0))


@pytest.mark.parametrize("pos_embed", ["sincos", "learned"])
def test_embed_of_kept_tokens_equals_picking_from_the_full_embedding(pos_embed):
  model = models.build(_tiny(pos_embed=pos_embed), rngs=nnx.Rngs(0))
  video = jax.random.normal(jax.random.key(2), (2, 3, 8, 8, 3))
  keep = jnp.array([[0, 5, 11], [7, 2, 3]], jnp.int32)
  full = model.embed(video)
  picked = model.embed(video, keep)
  assert picked.shape == (2, 3, 16)
  np.testing.assert_allclose(picked, jnp.take_along_axis(full, keep[..., None], axis=1), atol=1e-6)


@pytest.mark.parametrize("attention", ["joint", "factorised"])
def test_residual_stream_marker_keeps_values_and_gradients(attention, monkeypatch):
  video = jax.random.normal(jax.random.key(3), (2, 3, 8, 8, 3))

  def value_and_grads():
    model = models.build(_tiny(depth=3, attention=attention), rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss = lambda p: jnp.sum(jnp.sin(nnx.merge(graphdef, p, rest)(video)["tokens"]))
    return jax.jit(jax.value_and_grad(loss))(params)

  marked = value_and_grads()
  monkeypatch.setattr(layers, "residual_stream", lambda x: x)
  plain = value_and_grads()
  np.testing.assert_allclose(marked[0], plain[0], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(marked[1]), jax.tree.leaves(plain[1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_residual_stream_backward_is_a_division_on_cpu_only():
  # The marker's backward is a division, which XLA never duplicates into several fusions.
  x = jnp.ones((2, 4, 8))
  hlo = jax.jit(jax.grad(lambda x: jnp.sum(layers.residual_stream(x) ** 2))).lower(x).as_text()
  assert ("divide" in hlo) == (jax.default_backend() == "cpu")


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_last_attention_weights_are_what_the_last_block_averages_with(pool):
  model = models.build(_tiny(pool=pool, depth=2), rngs=nnx.Rngs(0))
  video = jax.random.normal(jax.random.key(0), (2, 3, 8, 8, 3))
  weights = model.last_attention(video)
  n = model.num_tokens
  assert weights.shape == (2, model.blocks[-1].attn.qkv.shape[2], n, n)
  if pool == "mean":
    # The last block's attention output is these weights applied to its values, heads projected.
    x = model.embed(video)
    for block in model.blocks[:-1]:
      x = block(x)
    attn = model.blocks[-1].attn
    _, _, v = attn._qkv(model.blocks[-1].norm1(x), None)
    expected = jnp.einsum("bhqk,bkhd,hdo->bqo", weights, v, attn.proj[...]) + attn.proj_bias[...]
    np.testing.assert_allclose(attn(model.blocks[-1].norm1(x)), expected, atol=1e-5)
  else:
    # The CLS token's row and column are left out: rows over the patches sum to less than 1.
    assert float(weights.sum(-1).max()) < 1.0
