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

import logging
import os
import sys

from jvssl import cli

log = logging.getLogger("jvssl")


def parse_args(argv):
  p = cli.parser(
    "python -m jvssl.tools.compare_methods", __doc__, config_help="config file whose variants are method names"
  )
  p.add_argument("--methods", required=True, help="comma-separated variants of --config")
  p.add_argument("--arg", default="", help="appended to every variant (e.g. runlocal)")
  p.add_argument("--workdir", required=True)
  return cli.parse(p, argv)


def compare(config_path: str, methods: list[str], workdir: str, overrides=(), arg: str = "") -> dict:
  """Trains and evaluates each method; returns {column: {metric: value}} with the random init first."""
  from jvssl import checkpointing, train
  from jvssl.evaluate import common

  columns = {}
  for i, method in enumerate(methods):
    spec = f"{config_path}:{method}" + (f",{arg}" if arg else "")
    config = cli.load_config(spec, overrides)
    method_dir = os.path.join(workdir, method)
    checkpointing.check_writable(method_dir)
    result = train.train(config, method_dir, writer=None)
    trainer = result.trainer
    if i == 0:
      columns["random init"] = common.run(config, trainer.predictor(trainer.init(config.seed)), trainer.mesh)
    columns[method] = common.run(config, trainer.predictor(result.state), trainer.mesh)
    log.info("%s: %s", method, columns[method])
  return columns


def main(argv=None) -> int:
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  cli.setup_logging()
  methods = [m for m in args.methods.split(",") if m]

  def run() -> None:
    from jvssl.evaluate import common

    os.makedirs(args.workdir, exist_ok=True)
    columns = compare(args.config, methods, args.workdir, overrides, args.arg)
    print("\n" + common.write_results(args.workdir, columns) + "\n", flush=True)

  return cli.run(run)


if __name__ == "__main__":
  from jvssl import cpu_memory

  cpu_memory.reexec_with_tuned_malloc()
  sys.exit(main())
