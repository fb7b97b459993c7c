import hashlib
import json
import os

import jax
import numpy as np
import pytest

from jvssl import sharding, train, trainer as trainer_lib
from jvssl.data import pipeline
from jvssl.errors import CheckpointError, NonFiniteLossError, UserError


def _tree_bytes(tree):
  return [np.asarray(x).tobytes() for x in jax.tree.leaves(tree)]


def _dir_digest(path):
  digest = hashlib.sha256()
  for root, _, files in sorted(os.walk(path)):
    for name in sorted(files):
      with open(os.path.join(root, name), "rb") as f:
        digest.update(name.encode() + f.read())
  return digest.hexdigest()


def _crash_after(monkeypatch, num_batches):
  """Makes the next training run fail after `num_batches` batches, like a killed job."""
  original = pipeline.device_iterator

  def failing(*args, **kwargs):
    for i, batch in enumerate(original(*args, **kwargs)):
      if i == num_batches:
        raise RuntimeError("simulated crash")
      yield batch

  monkeypatch.setattr(pipeline, "device_iterator", failing)
  return original


@pytest.mark.parametrize("crash_at", [3, 4])
def test_resume_is_exact(tiny_config, tmp_path, monkeypatch, crash_at):
  c = tiny_config
  c.train.num_steps, c.train.checkpoint_every_steps = 6, 2
  with c.unlocked():
    c.evals = {}  # Three runs' evaluations would cost more than their steps and show nothing of resuming.
  uninterrupted = train.train(c, str(tmp_path / "a"))

  original = _crash_after(monkeypatch, crash_at)
  with pytest.raises(RuntimeError, match="simulated crash"):
    train.train(c, str(tmp_path / "b"))
  monkeypatch.setattr(pipeline, "device_iterator", original)
  resumed = train.train(c, str(tmp_path / "b"))

  assert int(resumed.state.step) == 6
  assert _tree_bytes(resumed.state.params) == _tree_bytes(uninterrupted.state.params)
  assert _tree_bytes(resumed.state.opt_state) == _tree_bytes(uninterrupted.state.opt_state)


def test_resume_continues_the_data_order(tiny_config):
  whole = list(pipeline.train_dataset(tiny_config, start_step=0).take(5).as_numpy_iterator())
  later = list(pipeline.train_dataset(tiny_config, start_step=3).take(2).as_numpy_iterator())
  for a, b in zip(whole[3:], later):
    np.testing.assert_array_equal(a["video"], b["video"])
    np.testing.assert_array_equal(a["label"], b["label"])


def test_nonfinite_loss_stops_before_saving(tiny_config, tmp_path):
  c = tiny_config
  c.optimizer.lr = 1e30
  c.schedule.warmup_steps = 0
  c.train.num_steps, c.train.checkpoint_every_steps, c.train.log_every_steps = 4, 1, 1
  with pytest.raises(
    NonFiniteLossError,
    match=r"non-finite at step 2 \(step N is the N-th optimizer step, as in the log and checkpoint names\); "
    r"stopped before saving \(last good checkpoint: step 1\)",
  ):
    train.train(c, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]


def test_incompatible_checkpoint_is_refused_and_left_intact(tiny_config, tmp_path):
  c = tiny_config
  c.train.num_steps = 2
  train.train(c, str(tmp_path))
  before = _dir_digest(tmp_path / "checkpoints")
  c.model.width = 48
  c.train.num_steps = 4
  saved_config = (tmp_path / "config.json").read_text()
  with pytest.raises(CheckpointError, match=r"params/.* has shape \(.*32.*\), this config needs \(.*48.*\)"):
    train.train(c, str(tmp_path))
  assert _dir_digest(tmp_path / "checkpoints") == before
  assert (tmp_path / "config.json").read_text() == saved_config  # The run's record is the config it trained with.


def test_resuming_with_a_changed_config_keeps_the_saved_one_and_names_the_changes(tiny_config, tmp_path, caplog):
  c = tiny_config
  c.train.num_steps, c.train.checkpoint_every_steps = 2, 2
  with c.unlocked():
    c.evals = {}
  train.train(c, str(tmp_path))
  first = json.loads((tmp_path / "config.json").read_text())
  train.train(c, str(tmp_path))  # The same config: nothing to keep, nothing to say.
  assert not list(tmp_path.glob("config-to-step*")) and "changed config" not in caplog.text
  c.train.num_steps, c.optimizer.lr = 4, c.optimizer.lr / 2
  train.train(c, str(tmp_path))
  assert json.loads((tmp_path / "config-to-step2.json").read_text()) == first
  assert json.loads((tmp_path / "config.json").read_text())["optimizer"]["lr"] == c.optimizer.lr
  assert "resuming at step 2 with a changed config" in caplog.text
  assert f"optimizer.lr: {first['optimizer']['lr']} -> {c.optimizer.lr}" in caplog.text
  assert "train.num_steps: 2 -> 4" in caplog.text


def test_unwritable_workdir(tiny_config, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(UserError, match="is not writable"):
    train.train(tiny_config, str(blocker / "run"))


def test_loss_falls_when_overfitting_one_batch(tiny_config):
  c = tiny_config
  c.data.synthetic.num_train = c.data.batch_size  # One batch, seen again and again.
  c.data.shuffle = False
  c.method.mask_type = "tube"
  # Raw-pixel targets: per-patch normalisation turns the flat background's faint noise into
  # unit-variance targets that no model can predict, which hides whether it learns at all.
  c.method.norm_pix_loss = False
  c.optimizer.lr, c.schedule.warmup_steps = 3e-3, 0
  c.train.num_steps = 1
  trainer = trainer_lib.Trainer(c, sharding.make_mesh(c.mesh), 60, 1.0)
  state = trainer.init(0)
  batch = pipeline.to_global(next(pipeline.train_dataset(c).as_numpy_iterator()), trainer.mesh, trainer.rules)
  losses = []
  for _ in range(60):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics["loss"]))
  assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
