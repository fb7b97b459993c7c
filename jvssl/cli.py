"""The command line every jvssl entry point shares: `--config=configs/x.py[:arg]` with `--config.a.b=value`
overrides, logging set-up, and user errors printed as one line with exit status 2.

A tool reads:

  p = cli.parser("python -m jvssl.tools.x", __doc__, config_help="...")
  p.add_argument("--out", required=True)
  args, overrides = cli.parse(p, argv)
  return cli.run(lambda: work(cli.load_config(args.config, overrides), args.out))

Tools import this module before TensorFlow or JAX (it sets TF_CPP_MIN_LOG_LEVEL)
and nothing heavy at import, so `--help` stays fast.
"""

import argparse
import logging
import os
import re
import sys
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
  from ml_collections import ConfigDict

# Before TensorFlow is imported anywhere: its C++ start-up chatter is not for users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
