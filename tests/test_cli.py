"""The shared command line: config overrides, default workdirs, user errors as one line with status 2, and a
quiet start-up."""

import os
import subprocess
import sys

import pytest

from jvssl import cli
from jvssl.errors import ConfigError

from conftest import REPO


def run_command(module: str, *argv: str, **env: str) -> subprocess.CompletedProcess:
  """`python -m module argv...` from the repository, in the environment of a user's shell."""
  environ = dict(os.environ, JAX_PLATFORMS="cpu", **env)
  environ.pop("TF_CPP_MIN_LOG_LEVEL", None)  # Set for the tests by conftest, not by users.
  return subprocess.run(
    [sys.executable, "-m", module, *argv], cwd=REPO, env=environ, capture_output=True, text=True, timeout=300
  )


def only_error_line(proc: subprocess.CompletedProcess) -> str:
  """The one line a failed command printed on stderr; fails the test unless that is all it printed."""
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith("jvssl: error: "), proc.stderr[-3000:]
  return lines[0]


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
  proc = run_command(
    "jvssl.tools.import_weights",
    "--from=videomae",
    "--src=/nonexistent.pth",
    "--config=configs/videomae_synthetic.py:runlocal",
    f"--out={tmp_path / 'run'}",
  )
  assert "/nonexistent.pth" in only_error_line(proc)


RUNLOCAL = "--config=configs/videomae_synthetic.py:runlocal"


@pytest.mark.parametrize(
  "argv, message",
  [
    (["--config=configs/videomae_k400.py:vit_q"], "configs/videomae_k400.py:vit_q: unknown variant 'vit_q'"),
    ([RUNLOCAL, "--config.train.bogus=1"], "unknown config key 'train.bogus'"),
    ([RUNLOCAL, "--config.method.mask_type=blocks"], "method.mask_type must be one of"),
    (
      [RUNLOCAL, "--config.data.source=video_folder", "--config.data.video_folder.train_list=/nonexistent/train.txt"],
      "annotation list not found: /nonexistent/train.txt",
    ),
  ],
  ids=["variant", "key", "method_field", "missing_list"],
)
def test_a_bad_config_is_one_line_on_stderr(tmp_path, argv, message):
  proc = run_command("jvssl.main", *argv, f"--workdir={tmp_path / 'run'}")
  assert message in only_error_line(proc)


def test_unreadable_videos_are_one_line_on_stderr(tmp_path):
  # The README's "Bad input" error: no video of the list can be read, so every stand-in fails too.
  (tmp_path / "train.txt").write_text("gone.mp4 0\nempty.mp4 1\n")
  (tmp_path / "empty.mp4").write_bytes(b"")
  proc = run_command(
    "jvssl.main",
    RUNLOCAL,
    "--config.data.source=video_folder",
    f"--config.data.video_folder.root={tmp_path}",
    f"--config.data.video_folder.train_list={tmp_path / 'train.txt'}",
    f"--workdir={tmp_path / 'run'}",
  )
  assert "could not be read" in only_error_line(proc)


def test_make_tfrecords_reports_a_missing_list_as_one_line(tmp_path):
  proc = run_command(
    "jvssl.tools.make_tfrecords",
    f"--videos={tmp_path}",
    "--list=/nonexistent/train.txt",
    f"--out={tmp_path}",
    "--shards=1",
  )
  assert "annotation list not found" in only_error_line(proc)


def test_tensorflow_import_is_quiet_unless_it_fails(tmp_path):
  # A stand-in TensorFlow that writes to file descriptor 2 at import, as TensorFlow's C++ start-up does.
  (tmp_path / "tensorflow").mkdir()
  init = tmp_path / "tensorflow" / "__init__.py"
  init.write_text("import os\nos.write(2, b'start-up chatter\\n')\n")
  code = "import sys\nimport jvssl.cli\nimport tensorflow\nprint('after the import', file=sys.stderr)\n"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))
  quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
  assert quiet.returncode == 0 and quiet.stderr == "after the import\n"
  init.write_text(init.read_text() + "raise ImportError('libtensorflow_framework.so.2: cannot open')\n")
  failed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
  assert failed.returncode == 1 and failed.stderr.startswith("start-up chatter\n")
  assert "ImportError: libtensorflow_framework.so.2: cannot open" in failed.stderr
