"""jvssl's command line: `python -m jvssl.main --config=configs/x.py[:arg] --workdir=DIR [--mode=train|eval]
[--config.some.field=value ...]`.

On a cluster every process runs the same command (see launch/); SLURM and TPU
pods are detected, other clusters pass --coordinator_address/--num_processes/--process_id.
"""

import argparse
import logging
import os
import sys

# Before TensorFlow is imported anywhere: its C++ start-up chatter is not for users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger("jvssl")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(prog="python -m jvssl.main", description=__doc__)
  parser.add_argument("--config", required=True, help="config file, optionally with :arg (configs/x.py:vit_s)")
  parser.add_argument("--workdir", required=True, help="where checkpoints, logs and results go")
  parser.add_argument("--mode", default="train", choices=("train", "eval"),
                      help="train (and evaluate at the end), or evaluate the workdir's latest checkpoint")
  parser.add_argument("--coordinator_address", help="HOST:PORT of process 0, for clusters JAX does not detect")
  parser.add_argument("--num_processes", type=int, help="number of processes in the job (with --coordinator_address)")
  parser.add_argument("--process_id", type=int, help="this process's index (with --coordinator_address)")
  args, rest = parser.parse_known_args(argv)
  overrides = []
  for item in rest:
    if not item.startswith("--config."):
      parser.error(f"unrecognised argument {item} (config fields are set with --config.field=value)")
    overrides.append(item[len("--config."):])
  return args, overrides


def setup_logging(main_process: bool = True) -> None:
  """INFO on process 0; the other processes of a multi-host job only say when something is wrong."""
  logging.basicConfig(level=logging.INFO if main_process else logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout,
                      force=True)
  for noisy in ("absl", "orbax", "jax", "tensorflow"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def make_writer(workdir: str):
  import jax
  from clu import metric_writers
  if jax.process_index() != 0:
    return None
  return metric_writers.AsyncWriter(metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard")))


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains, then runs config.evals on the result (and on the random init if asked); returns the columns."""
  from jvssl import checkpointing, train
  checkpointing.check_writable(workdir)
  writer = make_writer(workdir)
  result = train.train(config, workdir, writer=writer)
  columns = evaluate_encoders(config, result.trainer, result.state, workdir, writer)
  if writer is not None:
    writer.close()
  return columns


def evaluate_checkpoint(config, workdir: str) -> dict:
  from jvssl import checkpointing, sharding, train
  from jvssl.errors import UserError
  ckpt = checkpointing.Checkpointer(workdir, keep=config.train.keep_checkpoints, async_save=False)
  latest = ckpt.latest_step()
  if latest is None:
    raise UserError(f"no checkpoint in {ckpt.directory} to evaluate")
  num_steps, steps_per_epoch = train.schedule_length(config)
  trainer = train.Trainer(config, sharding.make_mesh(config.mesh), num_steps, steps_per_epoch)
  state, _ = ckpt.restore(latest, trainer.abstract_state())
  ckpt.close()
  return evaluate_encoders(config, trainer, state, workdir, writer=None)


def evaluate_encoders(config, trainer, state, workdir: str, writer) -> dict:
  from jvssl import evaluate
  if not config.evals:
    return {}
  columns = {}
  if config.eval.compare_random_init:
    log.info("evaluating the random initialisation")
    columns["random init"] = evaluate.run(config, trainer.encoder(trainer.init(config.seed)), trainer.mesh)
  log.info("evaluating the trained encoder")
  columns[config.method.name] = evaluate.run(config, trainer.encoder(state), trainer.mesh,
                                             step=int(state.step), writer=writer)
  table = evaluate.write_results(workdir, columns)
  print("\n" + table + "\n", flush=True)
  return columns


def setup_jax(config) -> None:
  """Process-wide JAX settings from config.train, before anything is compiled."""
  import jax
  if config.train.compilation_cache_dir:
    # Restarts (preemption, resume) load the compiled step instead of compiling it again.
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(config.train.compilation_cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def main(argv: list[str] | None = None) -> int:
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  setup_logging()
  from jvssl import config as config_lib, distributed
  from jvssl.errors import UserError
  try:
    distributed.initialize(distributed.Cluster(args.coordinator_address, args.num_processes, args.process_id))
    setup_logging(main_process=distributed.is_main())
    config = config_lib.load(args.config, overrides)
    setup_jax(config)
    if args.mode == "train":
      train_and_evaluate(config, args.workdir)
    else:
      evaluate_checkpoint(config, args.workdir)
  except UserError as e:
    print(f"jvssl: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  from jvssl import cpu_memory
  cpu_memory.reexec_with_tuned_malloc()
  sys.exit(main())
