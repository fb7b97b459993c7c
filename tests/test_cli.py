"""The shared command line: config overrides, default workdirs, and user errors as one line with status 2."""

import os
import re
import subprocess
import sys

import pytest

from jvssl import cli
from jvssl.errors import ConfigError

from conftest import REPO

# TensorFlow 2.21 logs through absl before absl::InitializeLog(), which ignores TF_CPP_MIN_LOG_LEVEL
# (abseil-cpp PR #1957): a banner line and glog-style "I0000 00:00:..." lines on stderr at import.
TF_CHATTER = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} \d\d:\d\d:\d\d")


def _parser():
  p = cli.parser("python -m jvssl.tools.x", "A tool.")
  p.add_argument("--out", default="")
  return p


def test_parse_splits_config_overrides_from_flags():
  args, overrides = cli.parse(
    _parser(), ["--config=configs/x.py:vit_s", "--config.data.batch_size=4", "--out=/tmp/o", "--config.model.variant=B"]
  )
  assert args.config == "configs/x.py:vit_s" and args.out == "/tmp/o"
  assert overrides == ["data.batch_size=4", "model.variant=B"]


def test_parse_rejects_a_stray_flag_with_usage_and_status_2(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.parse(_parser(), ["--config=configs/x.py", "--outt=/tmp/o", "--config.seed=1"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "unrecognised arguments --outt=/tmp/o" in err and "--config.field=value" in err and "usage" in err


def test_parse_needs_config():
  with pytest.raises(SystemExit) as exit_info:
    cli.parse(_parser(), ["--config.seed=1"])
  assert exit_info.value.code == 2


@pytest.mark.parametrize(
  "spec, workdir",
  [
    ("configs/videomae_k400.py", "workdirs/videomae_k400"),
    ("configs/videomae_k400.py:vit_s,runlocal", "workdirs/videomae_k400-vit_s-runlocal"),
    ("/abs/path/ssl.py:size=s, frames=8,", "workdirs/ssl-size=s-frames=8"),
    ("x.py:data=/d/k 400", "workdirs/x-data=_d_k_400"),
  ],
)
def test_default_workdir(spec, workdir):
  assert cli.default_workdir(spec) == workdir


def test_run_passes_the_exit_status_through():
  assert cli.run(lambda: None) == 0
  assert cli.run(lambda: 3) == 3


def test_run_prints_a_user_error_as_one_line_and_returns_2(capsys):
  def fail():
    raise ConfigError("unknown config key 'x'\n  did you mean 'y'?")

  assert cli.run(fail) == 2
  captured = capsys.readouterr()
  assert captured.err == "jvssl: error: unknown config key 'x' did you mean 'y'?\n" and captured.out == ""


def test_run_lets_other_errors_through():
  def bug():
    raise KeyError("a bug, not the user's doing")

  with pytest.raises(KeyError):
    cli.run(bug)


def test_load_config_applies_overrides():
  config = cli.load_config(os.path.join(REPO, "configs", "videomae_synthetic.py:runlocal"), ["data.batch_size=4"])
  assert config.data.batch_size == 4


def test_import_weights_reports_a_missing_source_as_one_line(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "jvssl.tools.import_weights",
      "--from=videomae",
      "--src=/nonexistent.pth",
      "--config=configs/videomae_synthetic.py:runlocal",
      f"--out={tmp_path / 'run'}",
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2, proc.stderr[-3000:]
  ours = [line for line in proc.stderr.splitlines() if not TF_CHATTER.match(line)]
  assert len(ours) == 1 and ours[0].startswith("jvssl: error:") and "/nonexistent.pth" in ours[0], proc.stderr
