"""The command line every jvssl entry point shares: `--config=configs/x.py[:arg]` with `--config.a.b=value`
overrides, logging set-up, and user errors printed as one line with exit status 2.

A tool reads:

  p = cli.parser("python -m jvssl.tools.x", __doc__, config_help="...")
  p.add_argument("--out", required=True)
  args, overrides = cli.parse(p, argv)
  return cli.run(lambda: work(cli.load_config(args.config, overrides), args.out))

Tools import this module before TensorFlow or JAX: it sets TF_CPP_MIN_LOG_LEVEL and makes the
process's first `import tensorflow` quiet (see _QuietTensorFlow), and imports nothing heavy itself,
so `--help` stays fast.
"""

import argparse
import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
  from ml_collections import ConfigDict

# Before TensorFlow is imported anywhere: its C++ start-up chatter is not for users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _stderr_held():
  """Sends file descriptor 2 to a temporary file while the body runs: what was written there is dropped
  if the body succeeds and replayed on stderr if it raises, so a failure still shows all it printed."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    failed = True
    try:
      yield
      failed = False
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      if failed:
        held.seek(0)
        data = held.read()
        while data:
          data = data[os.write(2, data) :]


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
  """Runs the process's first `import tensorflow`, wherever it happens, under _stderr_held.

  TensorFlow 2.21 logs through absl before absl::InitializeLog(), which ignores TF_CPP_MIN_LOG_LEVEL
  (abseil-cpp PR #1957): a banner and the oneDNN notice when tensorflow.python.platform loads
  libtensorflow_framework, then the same two lines again when the profiler plugin loads
  (tensorflow/python/profiler/internal/_pywrap_profiler_plugin.so carries its own copy of that code, not
  the shared library). Both happen inside `import tensorflow`, and only there, so holding stderr for that
  one import quiets them without hiding anything written later.
  """

  def find_spec(self, name, path, target=None):
    if name != "tensorflow":
      return None
    sys.meta_path.remove(self)  # Once: later imports find the module in sys.modules anyway.
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.loader is not None:
      exec_module = spec.loader.exec_module

      def quiet_exec_module(module):
        with _stderr_held():
          exec_module(module)

      spec.loader.exec_module = quiet_exec_module
    return spec


if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
  sys.meta_path.insert(0, _QuietTensorFlow())

CONFIG_PREFIX = "--config."


def setup_logging(main_process: bool = True) -> None:
  """INFO on process 0; the other processes of a multi-host job only say when something is wrong."""
  logging.basicConfig(
    level=logging.INFO if main_process else logging.WARNING,
    format="%(asctime)s %(message)s",
    datefmt="%H:%M:%S",
    stream=sys.stdout,
    force=True,
  )
  for noisy in ("absl", "orbax", "jax", "tensorflow"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def parser(
  prog: str, description: str | None, config_help: str = "config file, optionally with :arg (configs/x.py:vit_s)"
) -> argparse.ArgumentParser:
  """An ArgumentParser with the required `--config` flag; the description (usually the module's docstring) is
  printed as written."""
  p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True, help=config_help)
  return p


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
  """Parses argv (default: sys.argv[1:]) -> (flags, config overrides as "a.b=value", without `--config.`).

  Any other argument the parser does not know is a usage error: it prints the usage and exits with status 2.
  """
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  stray = [item for item in rest if not item.startswith(CONFIG_PREFIX)]
  if stray:
    # Plural as argparse's own message, and every stray argument at once, so one run shows all the typos.
    parser.error(f"unrecognised arguments {' '.join(stray)} (config fields are set with --config.field=value)")
  return args, [item[len(CONFIG_PREFIX) :] for item in rest]


def load_config(spec: str, overrides: Iterable[str] = ()) -> "ConfigDict":
  """`configs/x.py[:arg]` with "a.b=value" overrides applied -> the validated ConfigDict; ConfigError if not."""
  from jvssl import config as config_lib

  return config_lib.load(spec, overrides)


def run(fn: Callable[[], int | None]) -> int:
  """Calls fn -> its exit status (0 when it returns None); a UserError becomes one line on stderr and status 2."""
  from jvssl.errors import UserError

  try:
    code = fn()
  except UserError as e:
    # One line, whatever the message: logs and wrappers that grep for "jvssl: error:" see all of it.
    message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    print(f"jvssl: error: {message}", file=sys.stderr, flush=True)
    return 2
  return 0 if code is None else code


def default_workdir(spec: str) -> str:
  """The workdir of a run started without --workdir, relative to the current directory:
  "configs/videomae_k400.py:vit_s,runlocal" -> "workdirs/videomae_k400-vit_s-runlocal"."""
  path, _, arg = spec.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  # Empty words are skipped as jvssl.config.parse_arg skips them, so ":vit_s," and ":vit_s" share a workdir.
  words = [re.sub(r"[^A-Za-z0-9_.=-]", "_", word.strip()) for word in arg.split(",") if word.strip()]
  return os.path.join("workdirs", "-".join([name, *words]))
