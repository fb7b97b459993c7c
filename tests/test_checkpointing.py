"""Checkpoints verified on restore, the keep policy, and a run whose workdir is a gs:// bucket (tests/gcs_fake.py)."""

import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath
from gcs_fake import fake_gcs
from jax.experimental.compilation_cache import compilation_cache

from jvssl import checkpointing, config as config_lib, train
from jvssl.data import bad_input, pipeline
from jvssl.errors import CheckpointError
from jvssl.evaluate import common

from conftest import REPO, run_python


def _tree_bytes(tree):
  return [np.asarray(x).tobytes() for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """Every run here compiles the same step: a persistent cache makes all but the first one quick."""
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  before = {name: getattr(jax.config, name) for name in names}
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  # JAX decides once per process whether it uses the cache; this makes it decide again (and after, as before).
  compilation_cache.reset_cache()
  yield
  for name, value in before.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def reference(compile_cache, tmp_path_factory):
  """(config, workdir, params) of an uninterrupted 6-step run with checkpoints at steps 2, 4 and 6."""
  c = config_lib.load(os.path.join(REPO, "configs", "videomae_synthetic.py:runlocal"))
  c.train.num_steps, c.train.checkpoint_every_steps = 6, 2
  workdir = tmp_path_factory.mktemp("reference")
  result = train.train(c, str(workdir))
  return c, workdir, _tree_bytes(result.state.params)


def _largest_array_file(step_dir):
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
  return max(files, key=lambda p: p.stat().st_size)


def _damage(path, how: str) -> None:
  size = path.stat().st_size
  if how == "truncated":
    os.truncate(path, size // 2)
  elif how == "deleted":
    path.unlink()
  else:  # 4 KiB of other bytes in the middle, as a bad disk block or a partial overwrite leaves it.
    n = min(4096, size // 2)
    with open(path, "r+b") as f:
      f.seek(size // 2 - n // 2)
      f.write(np.random.default_rng(0).bytes(n))


@pytest.mark.parametrize("how", ["truncated", "deleted", "overwritten"])
def test_damaged_newest_checkpoint_is_reported_and_the_run_resumes_from_the_previous(reference, tmp_path, caplog, how):
  c, source, params = reference
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  damaged = _largest_array_file(workdir / "checkpoints" / "6")
  _damage(damaged, how)

  with caplog.at_level(logging.WARNING, logger="jvssl"):
    resumed = train.train(c, str(workdir))

  warnings = [r.getMessage() for r in caplog.records if r.name == "jvssl" and r.levelno >= logging.WARNING]
  assert len(warnings) == 1 and "\n" not in warnings[0], warnings
  assert f"checkpoint {workdir / 'checkpoints' / '6'} is damaged" in warnings[0]
  assert "moved it to 6.damaged and resumed from step 4" in warnings[0]
  assert _tree_bytes(resumed.state.params) == params
  # Kept for a post-mortem, out of the way of the new step 6.
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4", "6", "6.damaged"]
  relative = damaged.relative_to(workdir / "checkpoints" / "6")
  assert (workdir / "checkpoints" / "6.damaged" / relative).exists() == (how != "deleted")


def test_all_checkpoints_damaged_is_one_error_and_moves_nothing(reference, tmp_path):
  c, source, _ = reference
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  for step in ("2", "4", "6"):
    _damage(_largest_array_file(workdir / "checkpoints" / step), "truncated")
  with pytest.raises(CheckpointError, match=r"every checkpoint in .* is damaged \(step 6: .*; also steps 4, 2\)") as e:
    train.train(c, str(workdir))
  assert "\n" not in str(e.value)
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4", "6"]


def test_workdir_in_a_bucket_trains_checkpoints_and_resumes(reference, tmp_path, monkeypatch):
  c, _, params = reference
  root = tmp_path / "gcs"
  original = pipeline.device_iterator

  def crash_after_3(*args, **kwargs):
    for i, batch in enumerate(original(*args, **kwargs)):
      if i == 3:
        raise RuntimeError("simulated crash")
      yield batch

  with fake_gcs(str(root)):
    monkeypatch.setattr(pipeline, "device_iterator", crash_after_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
      train.train(c, "gs://bucket/run")
    monkeypatch.setattr(pipeline, "device_iterator", original)
    resumed = train.train(c, "gs://bucket/run")

    bad_input.write_bad_files("gs://bucket/run/bad_files.0.tsv")
    common.write_results("gs://bucket/run", {"m": {"knn/accuracy": 0.5}})
    assert epath.Path("gs://bucket/run/results.md").read_text().startswith("| evaluation | m |")

  assert _tree_bytes(resumed.state.params) == params
  run = root / "bucket" / "run"
  assert sorted(os.listdir(run / "checkpoints")) == ["2", "4", "6"]
  # On GCS orbax marks a finished checkpoint with a commit file instead of renaming a directory.
  assert (run / "checkpoints" / "6" / "commit_success.txt").exists()
  assert {"config.json", "bad_files.0.tsv", "results.json", "results.md"} <= set(os.listdir(run))
  assert not (tmp_path / "gs:").exists() and not os.path.exists("gs:")  # Nothing took gs:// as a local path.


def test_readable_checkpoint_with_other_values_fails_its_digests(tmp_path, caplog):
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=3, async_save=False)
  for step in (1, 2):
    ckpt.save(step, {"w": jnp.full((4, 8), float(step)), "b": jnp.zeros(8)}, {"step": step})
  ckpt.close()
  # Step 2's arrays replaced by step 1's: every file is whole and readable, only the values are wrong (as when
  # an overwritten block still decodes); the storage layer cannot tell, the digests can.
  state_dir = tmp_path / "checkpoints" / "2" / "state"
  shutil.rmtree(state_dir)
  shutil.copytree(tmp_path / "checkpoints" / "1" / "state", state_dir)

  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=3, async_save=False)
  abstract = {"w": jax.ShapeDtypeStruct((4, 8), jnp.float32), "b": jax.ShapeDtypeStruct((8,), jnp.float32)}
  with caplog.at_level(logging.WARNING, logger="jvssl"):
    step, state, _ = ckpt.restore_latest(abstract)
  ckpt.close()
  assert step == 1 and float(state["w"][0, 0]) == 1.0
  assert "1 of 2 arrays differ from the digests saved with them (first: 'w')" in caplog.text


def test_keep_policy_keeps_the_newest_and_every_kth(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=2, keep_every=4, async_save=False)
  state = {"w": jnp.arange(6.0).reshape(2, 3)}
  for step in range(1, 11):
    ckpt.save(step, state, {"step": step})
  ckpt.close()
  assert sorted(int(name) for name in os.listdir(tmp_path / "checkpoints")) == [4, 8, 9, 10]


def test_digests_change_with_any_word_and_with_order():
  x = jnp.arange(64, dtype=jnp.float32).reshape(8, 8)
  base = checkpointing.digests({"x": x})["x"]
  flipped = x.at[3, 5].set(jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(x[3, 5], jnp.uint32) ^ 1, x.dtype))
  assert checkpointing.digests({"x": flipped})["x"] != base
  assert checkpointing.digests({"x": x.T})["x"] != base
  assert checkpointing.digests({"x": x.astype(jnp.bfloat16)})["x"] != checkpointing.digests({"x": x})["x"]
  assert checkpointing.digests({"x": jnp.array(x)})["x"] == base


def test_digests_do_not_depend_on_the_sharding():
  run_python(
    """
import jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
from jvssl import checkpointing
tree = {"x": jnp.arange(8 * 12 * 3, dtype=jnp.float32).reshape(8, 12, 3) * 0.37, "k": jnp.arange(5, dtype=jnp.int32)}
mesh = jax.make_mesh((2, 2), ("a", "b"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
x = jax.device_put(tree["x"], NamedSharding(mesh, P("a", "b")))
sharded = {"x": x, "k": jax.device_put(tree["k"], NamedSharding(mesh, P()))}
assert len(x.addressable_shards) == 4
assert checkpointing.digests(sharded) == checkpointing.digests(tree)
""",
    devices=4,
  )
