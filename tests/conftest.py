"""Shared fixtures. Tests run on the CPU with one device; sharding tests start
subprocesses with simulated devices (XLA_FLAGS must be set before JAX starts)."""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def tiny_config():
  """The synthetic VideoMAE recipe shrunk to a few seconds of CPU."""
  from jvssl import config as config_lib

  return config_lib.load(os.path.join(REPO, "configs", "videomae_synthetic.py:runlocal"))


def run_python(code: str, *, devices: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
  """Runs `code` in a fresh Python with `devices` simulated CPU devices; fails the test on error."""
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
  )
  if proc.returncode != 0:
    raise AssertionError(f"subprocess failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
  return proc
