"""A new run starts from another run's checkpoint (`config.init`): the encoder or every model variable is
loaded, position tables follow a change of frames or resolution, and a report says what was loaded."""

import os

import jax
import numpy as np
import pytest

from jvssl import config as config_lib, initialize, sharding, train, trainer as trainer_lib
from jvssl.errors import CheckpointError, ConfigError
from jvssl.models import layers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "videomae_synthetic.py:runlocal")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """A 2-step VideoMAE run of the synthetic recipe (4x32x32 clips, a 2x4x4 token grid): (workdir, final state)."""
  config = config_lib.load(CONFIG)
  config.train.num_steps = 2
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  return workdir, train.train(config, workdir, quiet=True).state


def _config(method, *, frames=4, size=32, model="vit", **init):
  """A run of `method` with the pretraining run's ViT (or a tiny MViTv2) on clips of frames x size x size."""
  c = config_lib.base_config(model=model, method=method)
  if model == "vit":
    c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 32, 1, 2, 64
    c.model.patch_size = (2, 8, 8)
  else:
    c.model.width, c.model.depths = 16, (1, 1, 1, 2)
  if method == "classify":
    c.method.num_classes = 8
    if model == "vit":
      c.model.final_norm = "pooled"
  else:
    c.method.decoder_width, c.method.decoder_depth, c.method.decoder_heads = 32, 1, 2
  c.data.num_frames, c.data.image_size, c.data.batch_size = frames, size, 8
  c.init.update(init)
  return c


def _trainer(config):
  return trainer_lib.Trainer(config, sharding.make_mesh(config.mesh), 2, 1.0)


def _leaves(tree, prefix):
  """{"prefix/a/b": leaf}, named as checkpoints name them."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {f"{prefix}/{jax.tree_util.keystr(p, simple=True, separator='/')}": x for p, x in leaves}


def _arrays(tree, prefix):
  return {k: np.asarray(v) for k, v in _leaves(tree, prefix).items()}


def test_finetuning_starts_from_the_pretrained_encoder_at_another_input_size(pretrained):
  """Fine-tuning on 8x48x48 clips (a 4x6x6 grid of 144 tokens): the encoder's weights are the pretraining
  run's, its fixed sin-cos table is this model's own, the head is at its initialisation."""
  workdir, pre = pretrained
  config = _config("classify", frames=8, size=48, checkpoint=workdir)
  trainer = _trainer(config)
  state, lines = initialize.initial_state(config, trainer)

  theirs, ours = _arrays(pre.params["encoder"], "encoder"), _arrays(state.params["encoder"], "encoder")
  assert ours.keys() == theirs.keys()
  for name in ours:
    np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
  np.testing.assert_array_equal(state.rest["encoder"]["pos_embed"], layers.sincos_table(144, 32))
  fresh = trainer.init(config.seed)
  np.testing.assert_array_equal(state.params["head"]["kernel"], fresh.params["head"]["kernel"])
  n = len(theirs)
  assert lines[0].endswith(
    f"/checkpoints/2 (init.what='encoder'): loaded {n} arrays (params/encoder {n});"
    " the optimizer state, step and random key start afresh"
  )
  assert lines[1:] == [
    "adapted to this input size (1): rest/encoder/pos_embed (sin-cos table computed for 144 tokens, was 32)",
    "not loaded (init.what='encoder'): params/decoder_blocks, params/decoder_head, params/decoder_norm,"
    " params/encoder_to_decoder, params/mask_token, rest/decoder_pos_embed",
  ]
  # Placed as the compiled step takes its state.
  placed = jax.tree.map(lambda x, sharding: x.sharding == sharding, state, trainer.state_shardings)
  assert all(jax.tree.leaves(placed))


@pytest.mark.parametrize("model", ["vit", "mvit"])
def test_learned_tables_are_resampled_and_other_shapes_refused(model):
  """A checkpoint of 4x32x32 clips into a model for 8x48x48: a learned ViT table is resampled on the token
  grid (2x4x4 -> 4x6x6), MViTv2's relative-position tables are interpolated as torchvision does."""
  config = _config("classify", frames=8, size=48, model=model)
  if model == "vit":
    config.model.pos_embed = "learned"
  trainer = _trainer(config)
  # The checkpoint has every array, so the fresh state can stay abstract (no initialisation to compile).
  fresh = trainer.abstract_state()
  rng = np.random.default_rng(0)
  leaves = {**_leaves(fresh.params, "params"), **_leaves(fresh.rest, "rest")}
  arrays = {k: rng.standard_normal(x.shape).astype(x.dtype) for k, x in leaves.items()}
  if model == "vit":
    tables = {"params/encoder/pos_embed": rng.standard_normal((32, 32)).astype(np.float32)}
    expected = {k: layers.resize_pos_table(v, (2, 4, 4), (4, 6, 6)) for k, v in tables.items()}
  else:
    tables = {
      k: rng.standard_normal((v.shape[0] + 4, v.shape[1])).astype(np.float32)
      for k, v in arrays.items()
      if "/rel_pos_" in k
    }
    expected = {k: layers.resize_axis(v, 0, arrays[k].shape[0], "linear") for k, v in tables.items()}
  arrays.update(tables)
  old = {"model": {"patch_size": [2, 8, 8]}, "data": {"num_frames": 4, "image_size": 32}}
  state, lines = initialize.load(fresh, trainer, initialize.Saved("ckpt", arrays, old), "all")

  ours = _arrays(state.params, "params")
  for name, value in expected.items():
    np.testing.assert_allclose(ours[name], value, atol=1e-6, err_msg=name)
  assert lines[1].startswith(f"adapted to this input size ({len(tables)}): ")
  assert ("resampled from a 2x4x4 token grid" if model == "vit" else "interpolated from") in lines[1]

  kernel = "params/encoder/blocks/0/mlp/fc1/kernel"
  arrays[kernel] = np.zeros((arrays[kernel].shape[0], 3), np.float32)
  with pytest.raises(CheckpointError, match=f"'{kernel}' has shape \\({arrays[kernel].shape[0]}, 3\\), this config"):
    initialize.load(fresh, trainer, initialize.Saved("ckpt", arrays, old), "all")


def test_config_fields_and_one_line_errors(tmp_path):
  config = config_lib.load(CONFIG, ["init.checkpoint=/some/run", "init.what=all", "init.step=500"])
  assert (config.init.checkpoint, config.init.what, config.init.step) == ("/some/run", "all", 500)
  config = _config("classify", checkpoint=str(tmp_path), what="decoder")
  with pytest.raises(ConfigError, match="init.what must be one of encoder, all, not 'decoder'"):
    initialize.initial_state(config, trainer=None)
  with pytest.raises(CheckpointError, match="does not exist"):
    initialize.read_checkpoint(str(tmp_path / "missing"))
  with pytest.raises(CheckpointError, match="is not a jvssl workdir"):
    initialize.read_checkpoint(str(tmp_path))
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(CheckpointError, match="has no checkpoints"):
    initialize.read_checkpoint(str(tmp_path))
  (tmp_path / "checkpoints" / "7").mkdir()
  with pytest.raises(CheckpointError, match="names step 7 but init.step is 3"):
    initialize.read_checkpoint(str(tmp_path / "checkpoints" / "7"), 3)
