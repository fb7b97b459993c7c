"""The step benchmark's command line: its JSON line, the PyTorch comparison and its errors."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

K400_SMOKE = os.path.join("configs", "videomae_k400.py:vit_s,runlocal")


def _benchmark(*args):
  # XLA's backend optimisations off: the tests check what the command prints, not how fast the steps are, and
  # compiling is most of their time.
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_backend_optimization_level=0")
  env.pop("GLIBC_TUNABLES", None)
  return subprocess.run(
    [sys.executable, "-m", "jvssl.tools.benchmark", f"--config={K400_SMOKE}", "--steps=2", "--warmup=1", *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )


def test_benchmark_prints_one_json_line_with_the_torch_ratio():
  pytest.importorskip("transformers")
  # Against itself with a smaller decoder: the versus step has its own time and FLOPs.
  proc = _benchmark("--torch", "--batch_size=2", "--versus=method.decoder_depth=1", "--versus=method.decoder_width=16")
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result["batch_size"] == 2 and result["devices"] == 1
  assert result["step_time_s"] > 0 and result["torch_step_time_s"] > 0
  assert result["speedup_vs_torch"] == pytest.approx(result["torch_step_time_s"] / result["step_time_s"], rel=0.01)
  assert result["gflops_per_step"] > 0 and 0 < result["mfu"]
  assert result["versus"] == ["method.decoder_depth=1", "method.decoder_width=16"]
  assert 0 < result["versus_gflops_per_step"] < result["gflops_per_step"] and result["versus_step_time_s"] > 0
  assert result["speedup_vs_versus"] == pytest.approx(result["versus_step_time_s"] / result["step_time_s"], rel=0.01)
  # The command re-executed itself with the CPU malloc settings.
  from jvssl import cpu_memory

  if cpu_memory.wanted({"JAX_PLATFORMS": "cpu"}):
    assert result["glibc_tunables"] == cpu_memory.TUNABLES


def test_benchmark_rejects_unknown_arguments_and_config_keys(capsys, monkeypatch):
  # In this process: the errors come before any step is built.
  from jvssl.tools import benchmark

  monkeypatch.chdir(REPO)
  argv = [f"--config={K400_SMOKE}", "--steps=2"]
  with pytest.raises(SystemExit) as exit_info:
    benchmark.main(argv + ["--stepz=3"])
  assert exit_info.value.code != 0 and "unrecognised arguments" in capsys.readouterr().err
  assert benchmark.main(argv + ["--config.train.no_such_key=1"]) == 2
  assert "no_such_key" in capsys.readouterr().err
