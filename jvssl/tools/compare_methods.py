"""Pretrains several methods from one config file and prints one table of their evaluations.

  python -m jvssl.tools.compare_methods --config=configs/ssl_synthetic.py \
      --methods=videomae,simclr,moco_v3,byol,dino,pretext,combined --workdir=/tmp/compare \
      [--labels=shape,motion] [--seeds=3 --seeded_methods=videomae,simclr] [--config.train.num_steps=600 ...]

Each method is the config file's variant of that name (`FILE:METHOD`, plus `--arg`
appended, e.g. `--arg=runlocal`), trained in `WORKDIR/METHOD` with the same
overrides and seed, then evaluated by the config's `evals` (linear probe, k-NN,
attentive probe, ...) on the same splits, once per labelling of the synthetic set
named by `--labels` (rows `shape/...`, `motion/...`); the randomly initialised
encoder of the first method is evaluated once as the baseline column. Row `minutes`
is each method's wall-clock time in this invocation, training and evaluation.
A method that was already trained in its workdir is resumed (so a finished one is
only evaluated again, and its minutes are those of the evaluation).

`--seeds=N --seeded_methods=A,B` trains A and B N times, with config seeds s, s+1, ...
(the data set stays the same; initialisation, data order and augmentation change),
seed s in `WORKDIR/A`, the others in `WORKDIR/A-seed<k>`; their column is the mean, and
a second table gives the standard deviation over the N runs. The tables go to stdout
and WORKDIR/results.md, the means to WORKDIR/results.json and, with seeds, every
run's values to WORKDIR/seeds.json.
"""

import json
import logging
import os
import sys
import time

import numpy as np

from jvssl import cli
from jvssl.errors import ConfigError

log = logging.getLogger("jvssl")


def parse_args(argv):
  p = cli.parser(
    "python -m jvssl.tools.compare_methods", __doc__, config_help="config file whose variants are method names"
  )
  p.add_argument("--methods", required=True, help="comma-separated variants of --config")
  p.add_argument("--arg", default="", help="appended to every variant (e.g. runlocal)")
  p.add_argument("--workdir", required=True)
  p.add_argument(
    "--labels",
    default="shape,motion",
    help="labellings of the synthetic set to evaluate on (data.synthetic.label); empty: the config's labels",
  )
  p.add_argument("--seeds", type=int, default=1, help="runs of each of --seeded_methods, with seeds s, s+1, ...")
  p.add_argument("--seeded_methods", default="", help="comma-separated methods trained --seeds times")
  return cli.parse(p, argv)


def evaluate(config, predictor, mesh, labels=()) -> dict[str, float]:
  """config.evals on predictor; with labels, once per labelling of the synthetic set, rows "<label>/<metric>"."""
  from jvssl.evaluate import common

  if not labels:
    return common.run(config, predictor, mesh)
  results = {}
  for label in labels:
    relabelled = config.copy_and_resolve_references()
    relabelled.data.synthetic.label = label
    results.update({f"{label}/{k}": v for k, v in common.run(relabelled, predictor, mesh).items()})
  return results


def compare(
  config_path: str,
  methods: list[str],
  workdir: str,
  overrides=(),
  arg: str = "",
  *,
  labels=(),
  seeds: int = 1,
  seeded_methods=(),
) -> dict[str, list[dict]]:
  """Trains and evaluates each method (seeded_methods `seeds` times); returns {column: [{metric: value} per run]},
  with the random init first."""
  from jvssl import checkpointing, train

  unknown = sorted(set(seeded_methods) - set(methods))
  if unknown:
    raise ConfigError(f"--seeded_methods {','.join(unknown)} are not among --methods")
  columns: dict[str, list[dict]] = {}
  for i, method in enumerate(methods):
    spec = f"{config_path}:{method}" + (f",{arg}" if arg else "")
    runs = []
    for k in range(seeds if method in seeded_methods else 1):
      start = time.monotonic()
      config = cli.load_config(spec, overrides)
      if labels and config.data.source != "synthetic":
        raise ConfigError(f"--labels relabels the synthetic set, not data.source={config.data.source}; pass --labels=")
      config.seed += k
      method_dir = os.path.join(workdir, method if k == 0 else f"{method}-seed{k}")
      checkpointing.check_writable(method_dir)
      result = train.train(config, method_dir, writer=None)
      trainer = result.trainer
      if i == 0 and k == 0:
        columns["random init"] = [evaluate(config, trainer.predictor(trainer.init(config.seed)), trainer.mesh, labels)]
      metrics = evaluate(config, trainer.predictor(result.state), trainer.mesh, labels)
      metrics["minutes"] = (time.monotonic() - start) / 60
      log.info("%s (seed %d): %s", method, config.seed, metrics)
      runs.append(metrics)
    columns[method] = runs
  return columns


def summary(columns: dict[str, list[dict]]) -> tuple[dict[str, dict], dict[str, dict]]:
  """(mean of every column's runs, standard deviation of the columns with more than one run), {column: {metric}}."""
  mean, spread = {}, {}
  for name, runs in columns.items():
    metrics = list(dict.fromkeys(m for run in runs for m in run))
    mean[name] = {m: float(np.mean([run[m] for run in runs if m in run])) for m in metrics}
    if len(runs) > 1:
      spread[name] = {m: float(np.std([run[m] for run in runs if m in run])) for m in metrics}
  return mean, spread


def write(workdir: str, columns: dict[str, list[dict]]) -> str:
  """results.json (means), results.md (the tables) and, with several runs of a method, seeds.json; returns the
  tables."""
  from etils import epath

  from jvssl.evaluate import common

  mean, spread = summary(columns)
  text = common.write_results(workdir, mean)
  if spread:
    runs = max(len(r) for r in columns.values())
    text += f"\n\nStandard deviation over {runs} seeds of the columns above that are means of {runs} runs:\n\n"
    text += common.comparison_table(spread)
    (epath.Path(workdir) / "results.md").write_text(text + "\n")
    (epath.Path(workdir) / "seeds.json").write_text(json.dumps({k: v for k, v in columns.items() if k in spread}))
  return text


def main(argv=None) -> int:
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  cli.setup_logging()
  split = lambda text: [m for m in text.split(",") if m]

  def run() -> None:
    if args.seeds < 1:
      raise ConfigError(f"--seeds must be at least 1, not {args.seeds}")
    os.makedirs(args.workdir, exist_ok=True)
    columns = compare(
      args.config,
      split(args.methods),
      args.workdir,
      overrides,
      args.arg,
      labels=split(args.labels),
      seeds=args.seeds,
      seeded_methods=split(args.seeded_methods),
    )
    print("\n" + write(args.workdir, columns) + "\n", flush=True)

  return cli.run(run)


if __name__ == "__main__":
  from jvssl import cpu_memory

  cpu_memory.reexec_with_tuned_malloc()
  sys.exit(main())
