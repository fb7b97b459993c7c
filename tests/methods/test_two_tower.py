"""A method with two towers, evaluated through its named functions: k-NN and linear probe on each tower,
cross-tower retrieval between them, and a skipped evaluator for a tower it does not have.

The method is defined here, not in jvssl/methods/: the video tower sees the clip, the motion tower its
frame differences, and a symmetric InfoNCE pulls the two embeddings of one clip together.
"""

import logging
import os

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from jvssl import config as config_lib, models, registry, train as train_lib
from jvssl.evaluate import common
from jvssl.methods import losses
from jvssl.methods.base import Method, embed_video, video_tokens

from conftest import REPO


def frame_differences(video: jax.Array) -> jax.Array:
  """video [B, T, H, W, C] -> [B, T, H, W, C]: frame t minus frame t - 1, zeros at t = 0 (keeps T for the encoder)."""
  return jnp.concatenate([jnp.zeros_like(video[:, :1]), video[:, 1:] - video[:, :-1]], axis=1)


class TwoTowerModel(nnx.Module):
  def __init__(self, config, *, rngs: nnx.Rngs):
    self.encoder = models.build(config, rngs=rngs)
    self.motion_encoder = models.build(config, rngs=rngs)


def embed_motion(model: nnx.Module, batch: dict) -> jax.Array:
  """batch["video"] [B, T, H, W, 3] normalised -> the motion tower's pooled embedding [B, D]."""
  return model.motion_encoder(frame_differences(batch["video"]))["pooled"].astype(jnp.float32)


def motion_tokens(model: nnx.Module, batch: dict) -> jax.Array:
  """batch["video"] -> the motion tower's tokens [B, T', S, D], time-major."""
  tokens = model.motion_encoder(frame_differences(batch["video"]))["tokens"]
  return tokens.reshape(tokens.shape[0], model.motion_encoder.grid[0], -1, tokens.shape[-1]).astype(jnp.float32)


@registry.METHODS.register("two_tower_test")
class TwoTower(Method):
  """Symmetric InfoNCE between the pooled embeddings of the video and motion towers of each clip."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict({"temperature": 0.1})

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return TwoTowerModel(self.config, rngs=rngs)

  def loss(self, model, batch, rng, step):
    del step
    video_rng, motion_rng = jax.random.split(rng)
    video = batch["video"]
    z_video = model.encoder(video, rng=video_rng)["pooled"]
    z_motion = model.motion_encoder(frame_differences(video), rng=motion_rng)["pooled"]
    # [B, 2, D] -> [2B, D], batch-major: the two towers of a clip are its two views.
    z = jnp.stack([z_video, z_motion], axis=1).reshape(-1, z_video.shape[-1]).astype(jnp.float32)
    return losses.info_nce(z, 2, self.config.method.temperature), losses.embedding_stats(z)

  def predict_fns(self):
    return {
      "embed_video": embed_video,
      "video_tokens": video_tokens,
      "embed_motion": embed_motion,
      "motion_tokens": motion_tokens,
    }


def two_tower_config():
  """configs/videomae_synthetic.py:runlocal's data, model and schedule, with this file's method and evaluations."""
  demo = config_lib.load(os.path.join(REPO, "configs", "videomae_synthetic.py:runlocal"))
  c = config_lib.base_config(model="vit", method="two_tower_test")
  for key in ("data", "model", "optimizer", "schedule", "train", "eval"):
    c[key] = demo[key].copy_and_resolve_references()
  # Steps are milliseconds here (compiling them is what takes the time): enough for the towers to pair up
  # the 64 training clips, not to generalise to unseen ones.
  c.train.num_steps, c.train.log_every_steps = 200, 200
  c.schedule.warmup_steps = 10
  probe = {"num_train": 32, "steps": 20}
  for tower in ("video", "motion"):
    c.evals[f"knn_{tower}"] = config_lib.eval_config("knn", embedding=tower, num_train=32)
    c.evals[f"probe_{tower}"] = config_lib.eval_config("linear_probe", embedding=tower, **probe)
  c.evals.retrieval = config_lib.eval_config("paired_retrieval", query="video", gallery="motion")
  # On clips it trained on; the same 32 as the k-NN's training features, so they are computed once.
  c.evals.retrieval_train = config_lib.eval_config("paired_retrieval", split="train", num_examples=32)
  c.evals.knn_audio = config_lib.eval_config("knn", embedding="audio", num_train=32)
  config_lib.validate(c)
  return c


def test_two_towers_are_evaluated_through_named_functions(caplog):
  config = two_tower_config()
  with caplog.at_level(logging.INFO, logger="jvssl"):
    result = train_lib.train(config, None, quiet=True)
    trainer = result.trainer
    results = common.run(config, trainer.predictor(result.state), trainer.mesh)

  fractions = [f"{name}/accuracy" for name in ("knn_video", "probe_video", "knn_motion", "probe_motion")]
  ranks = []
  for name in ("retrieval", "retrieval_train"):
    for direction in ("", "reverse/"):
      fractions += [f"{name}/{direction}recall@{k}" for k in (1, 5, 10)]
      ranks.append(f"{name}/{direction}median_rank")
  for key in fractions:
    assert 0.0 <= results[key] <= 1.0, (key, results)
  for key in ranks:  # Both splits have 32 examples here.
    assert 1.0 <= results[key] <= 32, (key, results)
  assert not any(key.startswith("knn_audio/") for key in results), results
  assert "eval knn_audio skipped: the method has no 'embed_audio'" in caplog.text
  # The towers learnt to find each other: on their training clips recall@1 is about 0.5 (0.4 to 0.7 over
  # seeds), the random initialisation's about 1/32 (chance). Unseen clips stay at chance after so little data.
  assert results["retrieval_train/recall@1"] > 4 / 32, results
  assert results["retrieval_train/median_rank"] <= 4, results
