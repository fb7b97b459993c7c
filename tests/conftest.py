"""Shared fixtures. Tests run on the CPU with one device; sharding tests start
subprocesses with simulated devices (XLA_FLAGS must be set before JAX starts)."""

import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

# One persistent XLA compilation cache for the whole run, made by the process that starts pytest and inherited by
# both xdist processes and every subprocess they start (before any test imports JAX): many tests compile the same
# tiny steps, and compiling, not running, is most of their time. Entries are keyed by the computation, the XLA
# flags and the devices, so runs that differ in those never share one. A cache the caller set is left as it is.
_OWN_XLA_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _OWN_XLA_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jvssl-tests-xla-cache-")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Files of about half a minute or more on 2 cores (`make test` prints the slowest tests), longest first. `make
# test` runs them before the rest, in this order (`--no-loadscope-reorder`: xdist would otherwise order files by
# their number of tests): with `pytest -n 2 --dist loadfile`, one of them left to the end would keep one process
# busy after the other has run out of files.
SLOW_FILES = (
  "test_finetune_run.py",
  "test_notebooks.py",
  "test_recipes.py",
  "test_train_methods.py",
  "test_compare_methods.py",
  "test_train.py",
  "test_cross_modal.py",
  "test_masked_family.py",
  "test_distributed.py",
  "test_benchmark.py",
  "test_sharding_equivalence.py",
  "test_mvit.py",
  "test_memory_plan.py",
  "test_captioning.py",
  "test_downstream.py",
  "test_attentive_probe.py",
  "test_cross_device_negatives.py",
  "test_checkpointing.py",
  "test_data_service.py",
  "test_multislice.py",
)


def pytest_sessionfinish(session):
  if _OWN_XLA_CACHE:  # The process that made it, after the xdist processes have finished.
    shutil.rmtree(_OWN_XLA_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOW_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))  # Stable: the rest keep their order.


@pytest.fixture
def tiny_config():
  """The synthetic VideoMAE recipe shrunk to a few seconds of CPU."""
  from jvssl import config as config_lib

  return config_lib.load(os.path.join(REPO, "configs", "videomae_synthetic.py:runlocal"))


def run_python(
  code: str, *, devices: int = 1, timeout: int = 600, optimize: bool = True
) -> subprocess.CompletedProcess:
  """Runs `code` in a fresh Python with `devices` simulated CPU devices; fails the test on error.

  optimize=False turns XLA's backend optimisations off: for tests that compile more than they run, it
  halves their time; results that two runs compare are computed alike.
  """
  flags = f"--xla_force_host_platform_device_count={devices}"
  if not optimize:
    flags += " --xla_backend_optimization_level=0"
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
  )
  if proc.returncode != 0:
    raise AssertionError(f"subprocess failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
  return proc
