import einops
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from flax import nnx

from jvssl import config as config_lib, sharding
from jvssl.errors import ConfigError
from jvssl.evaluate import attentive_probe, features

from test_linear_probe import data_mesh

NUM_CLASSES = 4


def marked_tokens(n: int, seed: int, num_tokens: int = 8, dim: int = 16):
  """tokens [n, num_tokens, dim] of noise, one of them (anywhere) marked along its class's direction; labels [n]."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, NUM_CLASSES, n)
  x = 0.5 * rng.normal(size=(n, num_tokens, dim)).astype(np.float32)
  x[np.arange(n), rng.integers(0, num_tokens, n), :NUM_CLASSES] += 4 * np.eye(NUM_CLASSES, dtype=np.float32)[y]
  return x, y


def probe_config(**overrides):
  fields = dict(depth=1, num_heads=4, weight_decays=(0.01,), batch_size=32, num_epochs=10, holdout_fraction=0.25)
  return config_lib.eval_config("attentive_probe", **(fields | overrides))


@pytest.fixture(scope="module")
def sweep():
  """A 2-probe sweep trained on 150 of 200 clips for 50 steps: at lr 3e-2, and at 1e-6, which cannot learn in that."""
  mesh, rules = data_mesh(), sharding.RULE_SETS["dp"]
  train = features.from_host(*marked_tokens(200, seed=0), mesh, rules)
  cfg = probe_config(lrs=(3e-2, 1e-6))
  sweep, params, held = attentive_probe.fit_on_features(cfg, train, NUM_CLASSES, seed=0)
  return sweep, params, held


def test_probe_learns_a_separable_toy_problem(sweep):
  sweep, params, held = sweep
  x, y = marked_tokens(100, seed=1)
  test = np.asarray(jax.jit(sweep.correct)(params, jnp.asarray(x), jnp.asarray(y), jnp.ones(len(y)))) / len(y)
  assert held[0] >= 0.9 and test[0] >= 0.9, (held, test)


def test_sweep_picks_the_clearly_best_setting_on_held_out_clips(sweep):
  sweep, _, held = sweep
  assert sweep.settings == [(3e-2, 0.01), (1e-6, 0.01)]
  assert held[1] < 0.5 < 0.9 <= held[0], held  # 50 held-out clips of 200; chance is 0.25.


def test_vjepa_initialisation():
  params, _ = attentive_probe.Sweep(probe_config(depth=3, lrs=(1e-3,)), 64, NUM_CLASSES, 10).init(seed=0)
  std = lambda p: float(jnp.std(p[0]))
  blocks = params["blocks"]
  assert len(blocks) == 2
  # Linear weights N(0, 0.02), then each block's output projections divided by sqrt(2 * its depth), and the cross
  # block's MLP output by the last self-attention block's.
  assert std(blocks[0]["attn"]["qkv"]) == pytest.approx(0.02, rel=0.05)
  assert std(blocks[0]["mlp"]["fc2"]["kernel"]) == pytest.approx(0.02 / np.sqrt(2), rel=0.05)
  assert std(blocks[1]["attn"]["proj"]) == pytest.approx(0.02 / np.sqrt(4), rel=0.05)
  assert std(params["mlp"]["fc2"]["kernel"]) == pytest.approx(0.02 / np.sqrt(4), rel=0.05)
  assert std(params["query"]) == pytest.approx(0.02, rel=0.2)
  assert float(jnp.abs(blocks[0]["attn"]["qkv_bias"]).max()) == 0.0


def _layer_norm(x, scale, bias, eps=1e-5):
  return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * scale + bias


def test_one_block_probe_is_vjepas_cross_attention_classifier(sweep):
  # V-JEPA's AttentiveClassifier at depth 1, written out as its PyTorch code computes it: q from the learned
  # query; k, v from norm1(tokens); softmax(q k / sqrt(head_dim)) v with no output projection; the query added;
  # then query + mlp(norm2(query)) and the linear head.
  sweep, params, _ = sweep  # Trained, so norm scales and biases are not at their initial 1 and 0.
  heads, dim = 4, 16
  rng = np.random.default_rng(0)
  tokens = 2 * rng.normal(size=(3, 10, dim)).astype(np.float32) + 1
  got = np.asarray(jax.jit(sweep.logits)(params, jnp.asarray(tokens)))[0]

  p = jax.tree.map(lambda a: np.asarray(a[0], np.float64), params)
  x = _layer_norm(tokens, p["norm1"]["scale"], p["norm1"]["bias"])
  q = p["query"] @ p["q"].reshape(dim, dim) + p["q_bias"].reshape(dim)  # [D]
  k = x @ p["kv"][:, 0].reshape(dim, dim)
  v = x @ p["kv"][:, 1].reshape(dim, dim) + p["v_bias"].reshape(dim)
  split = lambda t: t.reshape(*t.shape[:-1], heads, dim // heads)  # [..., heads, head_dim]
  scores = np.einsum("hk,bnhk->bhn", split(q), split(k)) / np.sqrt(dim // heads)
  attention = np.exp(scores - scores.max(-1, keepdims=True))
  attention /= attention.sum(-1, keepdims=True)
  y = p["query"] + np.einsum("bhn,bnhk->bhk", attention, split(v)).reshape(len(tokens), dim)
  h = _layer_norm(y, p["norm2"]["scale"], p["norm2"]["bias"]) @ p["mlp"]["fc1"]["kernel"] + p["mlp"]["fc1"]["bias"]
  h = 0.5 * h * (1 + scipy.special.erf(h / np.sqrt(2)))  # Exact GELU, as torch.nn.GELU.
  y = y + h @ p["mlp"]["fc2"]["kernel"] + p["mlp"]["fc2"]["bias"]
  want = y @ p["head"]["kernel"] + p["head"]["bias"]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


class _Patches(nnx.Module):
  """A stand-in encoder with nothing to compile but a reshape: video [B, T, H, W, 3] -> 8x8 patches."""

  def __init__(self):
    self.unused = nnx.Param(jnp.zeros(()))


def _patch_tokens(model, batch):
  return einops.rearrange(batch["video"], "b t (h p) (w q) c -> b t (h w) (p q c)", p=8, q=8)


def test_streamed_evaluator_on_the_data_pipeline(tiny_config):
  # The synthetic recipe's smoke data: the stand-in encoder runs on every training batch, selection on the test
  # split. (Tokens kept on the devices take the path of the tests above, from the feature cache.)
  from jvssl.evaluate import common
  from jvssl.trainer import Predictor

  probe = dict(depth=1, num_heads=2, num_train=32, batch_size=16, num_epochs=1, lrs=(1e-3, 1e-4), weight_decays=(0.1,))
  with tiny_config.unlocked():
    tiny_config.evals = {"probe": config_lib.eval_config("attentive_probe", stream=True, select_on="test", **probe)}
  graphdef, params, rest = nnx.split(_Patches(), nnx.Param, ...)
  predictor = Predictor(graphdef, params, rest, {"video_tokens": _patch_tokens})
  mesh = sharding.make_mesh(tiny_config.mesh)
  results = common.run(tiny_config, predictor, mesh)
  assert set(results) == {"probe/accuracy", "probe/lr", "probe/weight_decay"}
  assert 0 <= results["probe/accuracy"] <= 1 and results["probe/lr"] in (1e-3, 1e-4), results
  # Kept on the devices, the 32 clips' tokens (64 of 192 floats each) would take 1.6 MB: refused after one batch.
  cfg = config_lib.eval_config("attentive_probe", max_cache_gb=1e-3, **probe)
  with pytest.raises(ConfigError, match=r"take 0.00157 GB per device, over 0.001 \(max_cache_gb\); set stream=True"):
    attentive_probe.AttentiveProbe.run(
      tiny_config, cfg, predictor, mesh, features.FeatureCache(tiny_config, predictor, mesh)
    )


def test_choose_reports_the_setting_best_on_held_out_clips():
  settings = [(1e-3, 0.1), (1e-4, 0.1), (1e-3, 0.4)]
  test = np.array([0.5, 0.7, 0.6])
  assert attentive_probe.choose(settings, test, np.array([0.3, 0.2, 0.4])) == {
    "accuracy": 0.6,
    "lr": 1e-3,
    "weight_decay": 0.4,
    "holdout_accuracy": 0.4,
  }
  # Without held-out clips, on the test split (V-JEPA 2's protocol).
  assert attentive_probe.choose(settings, test, None) == {"accuracy": 0.7, "lr": 1e-4, "weight_decay": 0.1}
