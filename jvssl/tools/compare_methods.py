"""Pretrains several methods from one config file and prints one table of their evaluations.

  python -m jvssl.tools.compare_methods --config=configs/ssl_synthetic.py \
      --methods=videomae,simclr,moco_v3,byol,dino,pretext,combined --workdir=/tmp/compare \
      [--config.train.num_steps=600 ...]

Each method is the config file's variant of that name (`FILE:METHOD`, plus `--arg`
appended, e.g. `--arg=runlocal`), trained in `WORKDIR/METHOD` with the same
overrides and seed, then evaluated by the config's `evals` on the same splits; the
randomly initialised encoder of the first method is evaluated once as the baseline
column. A method that was already trained in its workdir is resumed (so a finished
one is only evaluated again). The table goes to stdout and to WORKDIR/results.md.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv):
  p = argparse.ArgumentParser(prog="python -m jvssl.tools.compare_methods", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True, help="config file whose variants are method names")
  p.add_argument("--methods", required=True, help="comma-separated variants of --config")
  p.add_argument("--arg", default="", help="appended to every variant (e.g. runlocal)")
  p.add_argument("--workdir", required=True)
  args, rest = p.parse_known_args(argv)
  bad = [item for item in rest if not item.startswith("--config.")]
  if bad:
    p.error(f"unrecognised arguments {' '.join(bad)} (config fields are set with --config.field=value)")
  return args, [item[len("--config."):] for item in rest]


def compare(config_path: str, methods: list[str], workdir: str, overrides=(), arg: str = "") -> dict:
  """Trains and evaluates each method; returns {column: {metric: value}} with the random init first."""
  from jvssl import checkpointing, config as config_lib, evaluate, main, train

  columns = {}
  for i, method in enumerate(methods):
    spec = f"{config_path}:{method}" + (f",{arg}" if arg else "")
    config = config_lib.load(spec, overrides)
    method_dir = os.path.join(workdir, method)
    checkpointing.check_writable(method_dir)
    result = train.train(config, method_dir, writer=None)
    if i == 0:
      columns["random init"] = evaluate.run(config, result.trainer.encoder(result.trainer.init(config.seed)),
                                            result.trainer.mesh)
    columns[method] = evaluate.run(config, result.trainer.encoder(result.state), result.trainer.mesh)
    main.log.info("%s: %s", method, columns[method])
  return columns


def main_cli(argv=None) -> int:
  from jvssl import evaluate, main
  from jvssl.errors import UserError
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  main.setup_logging()
  methods = [m for m in args.methods.split(",") if m]
  try:
    os.makedirs(args.workdir, exist_ok=True)
    columns = compare(args.config, methods, args.workdir, overrides, args.arg)
  except UserError as e:
    print(f"jvssl: error: {e}", file=sys.stderr)
    return 2
  print("\n" + evaluate.write_results(args.workdir, columns) + "\n", flush=True)
  return 0


if __name__ == "__main__":
  from jvssl import cpu_memory
  cpu_memory.reexec_with_tuned_malloc()
  sys.exit(main_cli())
