"""The evaluators and pictures of issue 19 (clip retrieval, temporal segmentation), their synthetic videos, and the
eval command that runs every task on a checkpoint."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict
from PIL import Image

from jvssl import config as config_lib, registry
from jvssl.data import synthetic, synthetic_tasks
from jvssl.evaluate import clip_retrieval, common, temporal_segmentation

from conftest import REPO


class _Cache:
  def __init__(self, splits):
    self.splits, self.calls = splits, []

  def get(self, split, embedding, readout, limit=0):
    self.calls.append((split, embedding, readout, limit))
    return self.splits[split]


def test_clip_retrieval_reads_both_splits():
  assert registry.EVALUATORS.get("clip_retrieval") is clip_retrieval.ClipRetrieval
  cfg = config_lib.eval_config("clip_retrieval", num_train=3, ks=(1, 2))
  gallery = (np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), np.array([0, 1, 2]))
  queries = (np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([1, 1]))
  cache = _Cache({"train": gallery, "test": queries})
  got = clip_retrieval.ClipRetrieval.run(ConfigDict(), cfg, None, None, cache)
  assert cache.calls == [("train", "video", "mean", 3), ("test", "video", "mean", 0)]
  assert got == {"recall@1": 0.5, "recall@2": 1.0}


def test_segmentation_videos():
  gen = synthetic_tasks.SegmentationVideos(length=40, size=16, num_classes=8, segment=(3, 7))
  video, labels = gen.split("train", 6)
  assert video.shape == (6, 40, 16, 16, 3) and video.dtype == np.uint8 and labels.shape == (6, 40)
  again, _ = synthetic_tasks.SegmentationVideos(length=40, size=16, num_classes=8, segment=(3, 7)).split("train", 6)
  np.testing.assert_array_equal(video, again)
  assert not np.array_equal(gen.video(0, "test")[0], video[0])
  assert labels.min() >= 0 and labels.max() < 8
  for row in labels:
    runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, row, -1]) != 0))
    assert len(runs) >= 40 // 7
  # The frames change where the shape moves: a video is not one still picture.
  assert np.abs(np.diff(video.astype(np.int16), axis=1)).mean() > 1
  with pytest.raises(ValueError, match="shrink"):
    synthetic_tasks.SegmentationVideos(length=8, size=8, num_classes=7)
  assert [name for name, _ in synthetic.MOTIONS[:2]] == ["right", "left"]


def test_segmentation_head_learns_separable_features():
  rng = np.random.default_rng(0)
  labels = np.repeat(rng.integers(0, 3, (12, 6)), 4, axis=1)  # 12 videos of 24 frames, runs of 4 frames.
  steps = labels[:, ::2]  # One feature per 2 frames.
  x = np.eye(3)[steps] + 0.1 * rng.normal(size=steps.shape + (3,))
  cfg = config_lib.eval_config("temporal_segmentation", steps=80, head_layers=2, head_width=16, lr=2e-2)
  params = temporal_segmentation.train_head(
    jnp.asarray(x[:8]), jnp.asarray(labels[:8]), frames_per_step=2, num_classes=3, cfg=cfg, seed=0
  )
  pred = np.repeat(np.asarray(temporal_segmentation.apply_head(params, jnp.asarray(x[8:])).argmax(-1)), 2, 1)
  from jvssl.evaluate import metrics

  got = metrics.segmentation_metrics(list(pred), list(labels[8:]))
  assert got["frame_accuracy"] > 0.95 and got["f1@50"] > 0.8, got


def test_select_evals_keeps_recipe_entries_and_adds_defaults(tiny_config):
  config = common.select_evals(tiny_config, ["clip_retrieval", "knn"])
  assert set(config.evals) == {"clip_retrieval", "knn"}
  assert config.evals.knn.num_train == tiny_config.evals.knn.num_train
  assert config.evals.clip_retrieval.type == "clip_retrieval"
  assert set(tiny_config.evals) == {"knn", "linear_probe", "finetune"}  # The original is left as it was.
  with pytest.raises(config_lib.ConfigError, match="unknown evaluator"):
    common.select_evals(tiny_config, ["nope"])


def test_eval_command_runs_every_task_on_a_pretrained_checkpoint(tmp_path, tiny_config):
  from jvssl import main, train

  workdir = str(tmp_path / "run")
  # Fewer, unrendered videos than the smoke recipe: the test pays for one compiled training step, not for data.
  data = {"data.synthetic.num_train": 16, "data.synthetic.num_test": 16, "data.synthetic.cache": False}
  config = tiny_config.copy_and_resolve_references()
  for key, value in data.items():
    config_lib.apply_override(config, f"{key}={value}")
  with config.unlocked():
    config.evals = ConfigDict()
  config.train.num_steps = 1
  train.train(config, workdir, quiet=True)

  # The linear probe and fine-tuning run the same way (their own tests cover them); here the tasks, and k-NN
  # as the recipe lists it.
  tasks = "knn,clip_retrieval,temporal_segmentation,near_duplicate,alignment,transitions,object_segmentation"
  small = data | {
    "evals.knn.num_train": 16,
    "evals.temporal_segmentation.num_train_videos": 4,
    "evals.temporal_segmentation.num_test_videos": 2,
    "evals.temporal_segmentation.clips_per_video": 4,
    "evals.temporal_segmentation.segment": "(3,6)",
    "evals.temporal_segmentation.head_layers": 2,
    "evals.temporal_segmentation.steps": 5,
    "evals.near_duplicate.num_queries": 4,
    "evals.near_duplicate.num_distractors": 4,
    "evals.near_duplicate.clips_per_video": 2,
    "evals.alignment.num_train_videos": 4,
    "evals.alignment.num_test_videos": 3,
    "evals.alignment.clips_per_video": 2,
    "evals.alignment.min_phase_frames": 2,
    "evals.transitions.num_test_videos": 2,
    "evals.transitions.clips_per_video": 4,
    "evals.transitions.segment": "(3,6)",
    "evals.object_segmentation.num_videos": 2,
    "evals.object_segmentation.clips_per_video": 2,
    "eval.compare_random_init": False,
  }
  argv = [f"--config={os.path.join(REPO, 'configs/videomae_synthetic.py:runlocal')}", f"--workdir={workdir}"]
  argv += ["--mode=eval", f"--evals={tasks}", "--pictures"] + [f"--config.{k}={v}" for k, v in small.items()]
  assert main.main(argv) == 0

  results = json.loads((tmp_path / "run" / "results.json").read_text())["videomae"]
  assert set(results) == {
    "knn/accuracy",
    *(f"clip_retrieval/recall@{k}" for k in (1, 5, 10, 20, 50)),
    *(f"temporal_segmentation/{m}" for m in ("frame_accuracy", "edit", "f1@10", "f1@25", "f1@50")),
    "near_duplicate/mAP",
    *(f"alignment/{m}" for m in ("phase_accuracy", "step_recall", "phase_progression", "kendalls_tau")),
    "transitions/f1@k",
    "transitions/ap",
    *(f"object_segmentation/{m}" for m in ("j_mean", "f_mean", "jf_mean")),
  }
  # An R^2 and a Kendall's tau may be below 0 (and tau undefined when every neighbour is one frame).
  signed = {"alignment/phase_progression", "alignment/kendalls_tau"}
  assert all(0.0 <= v <= 1.0 for k, v in results.items() if k not in signed), results
  assert all(np.isnan(results[k]) or results[k] <= 1.0 for k in signed), results
  # 16 training clips, 2 classes each of 8: with k = 20 >= 16 every query finds its class.
  assert results["clip_retrieval/recall@20"] == 1.0
  table = (tmp_path / "run" / "results.md").read_text()
  assert "| clip_retrieval/recall@1 |" in table and "| temporal_segmentation/edit |" in table
  for name in ("reconstruction", "attention", "tsne", "retrieval"):
    with Image.open(tmp_path / "run" / "pictures" / f"{name}.png") as image:
      assert image.size[0] > 100 and image.size[1] > 50
  assert os.listdir(tmp_path / "run" / "tensorboard")
