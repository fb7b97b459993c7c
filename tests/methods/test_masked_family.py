"""The masked-modelling family: every variant of configs/masked_synthetic.py learns (its loss falls
when it trains on one batch), the masks are the papers', and MVD's teachers load from checkpoints.

The trainings run in one subprocess (tests/methods/one_batch.py). Their batch is drawn here (squares moving
over plain backgrounds) rather than by the tf.data pipeline, which would cost more than the steps.
"""

import json

import numpy as np
import pytest

from tests.methods import one_batch

STEPS = 150

_PRELUDE = """
def config(method):
  c = config_lib.load(f"configs/masked_synthetic.py:{method},runlocal")
  c.optimizer.lr, c.schedule.warmup_steps = 2e-3, 0
  if method == "videomae_v2":
    # Half the masked tokens of a 32-token clip make a noisy normalised-pixel loss; raw pixels show the trend.
    c.method.norm_pix_loss = False
  return c

rng = np.random.default_rng(0)
b, t, size = 8, 4, 32
video = np.broadcast_to(rng.integers(0, 256, (b, 1, 1, 1, 3)), (b, t, size, size, 3)).astype(np.uint8).copy()
for i in range(b):
  y, x, dy, dx = rng.integers(0, 16, 4) // 2
  colour = rng.integers(0, 256, 3)
  for f in range(t):
    video[i, f, y + f * dy // 2 : y + f * dy // 2 + 12, x + f * dx // 2 : x + f * dx // 2 + 12] = colour
host_batch = {"video": video}


def extras(method, trainer, state, initial, out):
  if method == "vjepa":
    kernel = lambda tree: np.asarray(tree["blocks"][0]["mlp"]["fc1"]["kernel"])
    target, start, student = state.rest["target_encoder"], initial["target_encoder"], state.params["encoder"]
    out["target_to_start"] = float(np.abs(kernel(target) - kernel(start)).mean())
    out["target_to_student"] = float(np.abs(kernel(target) - kernel(student)).mean())
    out["start_to_student"] = float(np.abs(kernel(start) - kernel(student)).mean())
"""

METHODS = ("vjepa", "vjepa2", "maskfeat", "videomae_v2", "future", "mvd")


@pytest.fixture(scope="module")
def results():
  return one_batch.train(_PRELUDE, METHODS, STEPS)


@pytest.mark.parametrize("method", METHODS)
def test_loss_falls(results, method):
  history = results[method]["history"]
  one_batch.assert_falls([h["loss"] for h in history])
  if method == "maskfeat":
    # Better than predicting zeros: the head has learned more than the targets' scale.
    assert history[-1]["hog_mse"] < history[-1]["target_power"]
  if method == "mvd":
    one_batch.assert_falls([h["mse/image_teacher"] for h in history])
    one_batch.assert_falls([h["mse/video_teacher"] for h in history])


def test_vjepa_target_encoder_follows_the_context_encoder(results):
  r = results["vjepa"]
  assert r["target_to_start"] > 0  # It moved, although it has no gradient...
  assert r["target_to_student"] < r["start_to_student"]  # ...towards the context encoder.
  assert results["vjepa"]["history"][-1]["target_token_std"] > 0.1  # Its latents did not collapse.


# ---- masks ---------------------------------------------------------------------------------------


def _running_cell_reference(grid, ratio, phase):
  """VideoMAE V2's RunningCellMaskingGenerator (masking_generator.py) for one phase, transcribed: 1 = dropped."""
  t, h, w = grid
  k = int(4 * ratio)
  queue = np.hstack([np.ones(k), np.zeros(4 - k)])
  ptr, frames = phase, []
  for _ in range(t):
    ptr += 1
    unit = queue[(np.arange(4) + ptr) % 4].reshape(2, 2)
    frames.append(np.tile(unit, [h // 2, w // 2]).flatten())
  return np.stack(frames).reshape(-1).astype(bool)


def test_running_cell_mask_is_videomae_v2s():
  import jax

  from jvssl.methods import videomae

  grid = (4, 6, 8)
  masks = np.asarray(jax.jit(videomae.running_cell_mask, static_argnums=(1, 2, 3))(jax.random.key(0), 16, grid, 0.5))
  references = [_running_cell_reference(grid, 0.5, p) for p in range(4)]
  for mask in masks:
    assert any((mask == r).all() for r in references)
  assert len({m.tobytes() for m in masks}) > 1  # The phase is drawn per clip.


def test_dual_masking_decodes_masked_tokens_the_decoder_keeps():
  import jax

  from jvssl.methods import videomae

  grid = (4, 6, 6)
  visible, masked = jax.jit(videomae.tube_mask, static_argnums=(1, 2, 3))(jax.random.key(1), 8, grid, 0.75)
  dropped = jax.jit(videomae.running_cell_mask, static_argnums=(1, 2, 3))(jax.random.key(2), 8, grid, 0.5)
  decoded = np.asarray(jax.jit(videomae.decoder_subset, static_argnums=3)(jax.random.key(3), masked, dropped, 0.5))
  assert decoded.shape == (8, masked.shape[1] // 2)
  for b in range(8):
    assert set(decoded[b]) <= set(np.asarray(masked[b]))
    # With tube masking and 4 token frames every masked position is kept in 2 of its 4 frames.
    assert not np.asarray(dropped[b])[decoded[b]].any()


def test_future_mask_hides_the_last_frames():
  import jax

  from jvssl.methods import videomae

  visible, masked = videomae.future_mask(jax.random.key(0), 2, (4, 3, 3), 0.5)
  np.testing.assert_array_equal(visible[1], np.arange(18))
  np.testing.assert_array_equal(masked[0], np.arange(18, 36))


def test_vjepa_blocks_and_fixed_size_split():
  import jax

  from jvssl.methods import vjepa

  grid = (8, 14, 14)
  blocks = jax.jit(vjepa.multiblock_mask, static_argnums=range(1, 7))
  masked = np.asarray(blocks(jax.random.key(0), 4, grid, 1, 0.15, (1.0, 1.0), 1.0))
  # One block of int(196 * 0.15) = 29 positions at aspect ratio 1: 5x5, over all 8 frames.
  assert (masked.reshape(4, 8, 14, 14).sum(axis=(2, 3)) == 25).all()
  assert (masked.reshape(4, 8, -1) == masked.reshape(4, 8, -1)[:, :1]).all()
  masked = blocks(jax.random.key(1), 4, grid, 8, 0.15, (0.75, 1.5), 1.0)
  context, target = jax.jit(vjepa.split_tokens, static_argnums=(2, 3))(jax.random.key(2), masked, 300, 900)
  context, target, masked = np.asarray(context), np.asarray(target), np.asarray(masked)
  for b in range(4):
    assert not set(context[b]) & set(target[b])
    # Whichever kind runs short lends tokens, never making a visible target of a context token.
    if (~masked[b]).sum() >= 300:
      assert not masked[b][context[b]].any()
    if masked[b].sum() >= 900:
      assert masked[b][target[b]].all()


# ---- MVD's teachers ------------------------------------------------------------------------------


def test_mvd_teacher_from_a_jvssl_checkpoint(tmp_path):
  """A video teacher named by its workdir gets that run's encoder weights and architecture, frozen."""

  import jax
  from flax import nnx

  from jvssl import checkpointing, config as config_lib, models, registry
  from jvssl.methods.base import RunLength

  # What a pretraining run saves of its encoder, without the cost of compiling a train step.
  source = config_lib.load("configs/masked_synthetic.py:videomae,runlocal", ["model.width=48"])
  params = nnx.to_pure_dict(nnx.state(models.build(source, rngs=nnx.Rngs(3)), nnx.Param))
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=1, async_save=False)
  ckpt.save(0, {"params": {"encoder": params}}, {"step": 0, "config": json.loads(config_lib.to_json(source))})
  ckpt.wait()
  ckpt.close()

  c = config_lib.load(
    "configs/masked_synthetic.py:mvd,runlocal",
    [f"method.video_teacher.checkpoint={tmp_path}", "method.image_teacher.weight=0"],
  )
  method = registry.METHODS.get("mvd")(c, RunLength(1, 1.0))
  model = method.build(nnx.Rngs(0))
  teacher = model.teachers["video_teacher"]
  assert list(model.teachers) == ["video_teacher"] and teacher.width == 48 and model.encoder.width == 32
  saved = jax.device_get(params["blocks"][0]["mlp"]["fc1"]["kernel"])
  np.testing.assert_array_equal(teacher.blocks[0].mlp.fc1.kernel[...], saved)
  assert not nnx.state(model.teachers, nnx.Param)  # Frozen: nothing of a teacher is optimised.
