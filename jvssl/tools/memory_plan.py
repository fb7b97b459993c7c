"""Plans a recipe's memory per device and the activation checkpointing (remat) that makes it fit.

  python -m jvssl.tools.memory_plan --config=configs/videomae_k400.py:vit_l [--per_device_batch=N | --devices=N]
      [--budgets=16,32,80] [--remat=none,full] [--json] [--config.x=y ...]
  python -m jvssl.tools.memory_plan --config=configs [--only=videomae_k400,videomae_v2_hybrid] --markdown=PATH

The real train step (jvssl.trainer.Trainer) is compiled, never run, for the per-device batch on abstract arrays,
so no parameter is made and ViT-g plans in a few GB of host memory; XLA's memory analysis of the compiled step
gives the bytes. A model with `model.remat` (the ViT) is compiled once per policy, least recompute first
(none, dots_no_batch, dots, full), and each budget gets the first policy whose peak fits in it. Remat covers the
encoder's blocks only: a method's own decoder or predictor (VideoMAE's) is never checkpointed.

Per device, as a sum: the state (parameters, optimizer state, other variables) as the recipe's mesh and
`sharding.mode` lay it out, each array's shard; the batch; the step's temporaries (activations, gradients,
optimizer updates); the outputs the donated state does not take; generated code. The temporaries come from a
compile on one device: under FSDP or tensor parallelism that compile holds whole weights and gradients, so for
a sharded state they are an upper bound.

The per-device batch is data.batch_size over the data-parallel devices of the recipe's published run
(REFERENCE_DEVICES; a `runlocal` variant runs on one device), or over --devices, or --per_device_batch.
Budgets are in GB of 2^30 bytes, as GPU memory is quoted (an "80 GB" H100 has 80 GiB). A GPU process gets 75% of
it unless XLA_PYTHON_CLIENT_MEM_FRACTION (or XLA_PYTHON_CLIENT_PREALLOCATE=false) says otherwise.

The figures are those of the backend this runs on. XLA:CPU computes bfloat16 matmuls in float32 and jvssl's
CPU attention is the query-chunked kernel (jvssl.models.attention), not cuDNN's fused one, so a plan made on
the CPU overstates what a GPU or TPU needs; run it on the accelerator for that accelerator's figures. On the CPU
the step is compiled with XLA's memory-optimised scheduler (CPU_OPTIONS), without which remat would save nothing.
A config folder plans every recipe in it (each file's default, plus EXTRA_VARIANTS), one table each on stdout, and
writes them as one markdown table to --markdown.
"""

import dataclasses
import glob
import json
import math
import os
import sys
import time
from typing import Any

from jvssl import cli  # First: it sets TF_CPP_MIN_LOG_LEVEL before anything imports TensorFlow.

# isort: split

import jax
from ml_collections import ConfigDict

from jvssl import sharding, trainer as trainer_lib
from jvssl.config import apply_override
from jvssl.data import pipeline
from jvssl.errors import ConfigError, UserError

# Least recomputation first: the order in which a budget tries them (jvssl.models.vit.REMAT_POLICIES).
POLICIES = ("none", "dots_no_batch", "dots", "full")
# XLA:CPU's default scheduler runs independent ops early for parallelism: it hoists a checkpointed block's
# recomputation towards the start of the backward pass, so remat saves nothing, while accelerators' schedulers
# bound memory. Its memory-optimised scheduler comes nearer to them (a 12-block ViT classifier: "none" 464 MiB of
# temporaries, "full" 386, against 659 and 707 with the default); jvssl's CPU training runs the default one.
CPU_OPTIONS = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
GiB = 2**30
# Devices of each recipe's published run, per model variant where they differ (None: every variant), from the
# recipes' docstrings and comments: data.batch_size is split over these. The synthetic recipes run on one.
REFERENCE_DEVICES = {
  "videomae_k400": {"S": 32, "B": 64, "L": 64, "H": 64},
  "videomae_ssv2": {"S": 64, "B": 64},
  "videomae_finetune_k400": {"S": 32, "B": 64, "L": 64, "H": 64},
  "videomae_finetune_ssv2": {"S": 32, "B": 64},
  "videomae_finetune_ucf101": {None: 8},
  "videomae_finetune_hmdb51": {None: 8},
  "videomae_v2_hybrid": {"B": 32, "L": 48, "H": 64, "g": 64},
  "mvd_k400": {None: 32},
  "maskfeat_k400": {None: 8},
  "rho_byol_k400": {None: 8},
  "probe_k400": {None: 8, "L": 64},  # :linear trains as rho_byol_k400, :attentive as videomae_k400:vit_l.
  "svt_k400": {None: 4},
  "vjepa_k400": {None: 128},
  # CVRL's papers and config give the batch (1024), not the devices: 128 assumed, 8 clips each.
  "cvrl_k400": {None: 128},
  "videomae_synthetic": {None: 1},
  "masked_synthetic": {None: 1},
  "ssl_synthetic": {None: 1},
  "multimodal_synthetic": {None: 1},
}
# Variants a config folder's table adds to each file's default: the model sizes a user weighs against each other.
EXTRA_VARIANTS = {"videomae_k400": ("vit_s", "vit_l", "vit_h")}


@dataclasses.dataclass(frozen=True)
class Estimate:
  """Bytes per device of one compiled step."""

  state: int  # Parameters, optimizer state and other variables: this device's shards under the recipe's mesh.
  batch: int  # The step's input arrays.
  temp: int  # XLA's temporaries: activations kept for the backward pass, gradients, optimizer updates.
  outputs: int  # Outputs not written over the donated state (metrics).
  code: int  # Generated code, where the backend counts it on the device.
  compile_s: float

  @property
  def step(self) -> int:
    """What running the step adds to memory that already holds its state and batch."""
    return self.temp + self.outputs

  @property
  def peak(self) -> int:
    return self.state + self.batch + self.step + self.code


def parse_budgets(text: str) -> tuple[float, ...]:
  try:
    budgets = tuple(sorted(float(b) for b in text.split(",") if b.strip()))
  except ValueError:
    budgets = ()
  if not budgets or min(budgets) <= 0:
    raise ValueError(f"--budgets takes positive GB separated by commas (16,32,80), not {text!r}")
  return budgets


def parse_args(argv):
  p = cli.parser(
    "python -m jvssl.tools.memory_plan",
    __doc__,
    config_help="config file with :arg (configs/videomae_k400.py:vit_l), or a folder of them (configs)",
  )
  p.add_argument("--per_device_batch", type=int, default=0, help="clips per device (default: the recipe's)")
  p.add_argument("--devices", type=int, default=0, help="devices the batch is split over (default: the recipe's)")
  p.add_argument("--budgets", default="16,32,80", help="device memory budgets in GB (2^30 bytes), comma-separated")
  p.add_argument("--remat", default=",".join(POLICIES), help="the remat policies to try, comma-separated")
  p.add_argument("--json", action="store_true", help="print JSON instead of the table")
  p.add_argument("--markdown", default="", help="also write the table as markdown to this path")
  p.add_argument("--only", default="", help="with a config folder: these file names only (comma-separated)")
  args, overrides = cli.parse(p, argv)
  try:
    args.budgets = parse_budgets(args.budgets)
  except ValueError as e:
    p.error(str(e))
  remat = [r.strip() for r in args.remat.split(",") if r.strip()]
  if not remat or any(r not in POLICIES for r in remat):
    p.error(f"--remat takes policies among {', '.join(POLICIES)}, not {args.remat!r}")
  args.remat = tuple(r for r in POLICIES if r in remat)  # Least recompute first, whatever the order given.
  if args.per_device_batch < 0 or args.devices < 0:
    p.error("--per_device_batch and --devices must be positive")
  return args, overrides


def reference_devices(spec: str, config) -> int | None:
  """Devices of the run the recipe `spec` reproduces; 1 for a `runlocal` variant; None if unknown."""
  path, _, arg = spec.partition(":")
  if "runlocal" in (word.strip() for word in arg.split(",")):
    return 1
  table = REFERENCE_DEVICES.get(os.path.splitext(os.path.basename(path))[0], {})
  variant = config.model.variant if "variant" in config.model else None
  return table.get(variant, table.get(None))


def mesh_sizes(mesh_config, devices: int | None) -> dict[str, int]:
  """{"data": n, "fsdp": n, "model": n} of config.mesh over `devices` (None: each -1 axis of size 1)."""
  if devices is None:
    num_slices = math.prod(int(mesh_config[name]) for name in sharding.DCN_AXES)
    devices = num_slices * math.prod(s for name in sharding.MESH_AXES if (s := int(mesh_config[name])) != -1)
  return sharding.axis_sizes(mesh_config, devices)


def shard_bytes(shape: tuple[int, ...], itemsize: int, spec, sizes: dict[str, int]) -> int:
  """Bytes of one device's shard of an array laid out by PartitionSpec `spec` on a mesh of `sizes`."""
  dims = list(shape)
  for i, axes in enumerate(spec):
    names = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    dims[i] = -(-dims[i] // math.prod(sizes[n] for n in names))  # Uneven shards are padded.
  return math.prod(dims) * itemsize


def state_layout(abstract_state, sizes: dict[str, int]) -> tuple[int, int, str]:
  """(bytes per device, bytes of the whole state, "replicated" or the mesh axes it is sharded over)."""
  leaves = jax.tree.leaves(abstract_state)
  whole = sum(math.prod(x.shape) * x.dtype.itemsize for x in leaves)
  per_device = sum(shard_bytes(x.shape, x.dtype.itemsize, x.sharding.spec, sizes) for x in leaves)
  axes = {n for x in leaves for a in x.sharding.spec if a is not None for n in ((a,) if isinstance(a, str) else a)}
  axes = [n for n in sharding.MESH_AXES if n in axes and sizes[n] > 1]
  layout = "sharded over " + ", ".join(f"{n}={sizes[n]}" for n in axes) if axes else "replicated"
  return per_device, whole, layout


def one_device_config(config, per_device_batch: int, remat: str | None) -> ConfigDict:
  """`config` as compiled here: one device's batch on a one-device mesh, random input, the given remat."""
  config = config.copy_and_resolve_references()
  overrides = [f"data.batch_size={per_device_batch}", "data.source=synthetic"]
  overrides += [f"mesh.{name}=1" for name in (*sharding.MESH_AXES, *sharding.DCN_AXES)]
  if remat is not None:
    overrides.append(f"model.remat={remat}")
  for item in overrides:
    apply_override(config, item)
  return config


def abstract_batch(trainer) -> dict:
  """ShapeDtypeStructs of one batch as the data pipeline gives it to the trainer's method, sharded for its mesh."""
  spec = pipeline.train_dataset(trainer.config, inputs=trainer.inputs).element_spec
  return {
    name: jax.ShapeDtypeStruct(
      tuple(spec[name].shape),
      spec[name].dtype.as_numpy_dtype,
      sharding=sharding.batch_sharding(trainer.mesh, trainer.rules, len(spec[name].shape)),
    )
    for name in trainer.inputs.modalities
  }


@dataclasses.dataclass(frozen=True)
class CompiledStep:
  """A trainer and its step compiled for `batch` (ShapeDtypeStructs): `compiled(trainer.init(seed), batch)` runs it
  on arrays of those shapes."""

  trainer: trainer_lib.Trainer
  compiled: Any  # jax.stages.Compiled
  batch: dict
  compile_s: float


def compile_step(config, per_device_batch: int, remat: str | None = None) -> CompiledStep:
  """`config`'s train step compiled for one device's batch; nothing is allocated, the state and batch are
  ShapeDtypeStructs."""
  config = one_device_config(config, per_device_batch, remat)
  mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
  trainer = trainer_lib.Trainer(config, mesh, 1000, 1000.0)  # The schedule's length does not change memory.
  batch = abstract_batch(trainer)
  start = time.perf_counter()
  # The trainer's own jitted step, lowered here because Trainer.compile passes no compiler options.
  with sharding.use(trainer.mesh, trainer.rules):
    lowered = trainer._step.lower(trainer.abstract_state(), batch)
  compiled = lowered.compile(CPU_OPTIONS if jax.default_backend() == "cpu" else None)
  return CompiledStep(trainer, compiled, batch, time.perf_counter() - start)


def read_estimate(step: CompiledStep, sizes: dict[str, int]) -> tuple[Estimate, str]:
  """(Estimate, state layout) of a compiled step; sizes: the recipe's mesh, which lays out the state."""
  stats = step.compiled.memory_analysis()
  state, whole_state, layout = state_layout(step.trainer.abstract_state(), sizes)
  batch = sum(math.prod(x.shape) * x.dtype.itemsize for x in step.batch.values())
  if stats.argument_size_in_bytes < whole_state + batch:  # The analysis is not of this step's arguments.
    raise RuntimeError(f"XLA counts {stats.argument_size_in_bytes} argument bytes, less than the state and batch")
  return Estimate(
    state=state,
    batch=batch,
    temp=stats.temp_size_in_bytes,
    outputs=stats.output_size_in_bytes - stats.alias_size_in_bytes,
    code=stats.generated_code_size_in_bytes,
    compile_s=step.compile_s,
  ), layout


def choose(peaks: dict[str, int], budgets) -> dict[float, str | None]:
  """{budget GB: the first policy of `peaks` (in its order) whose peak fits, or None}."""
  return {b: next((p for p, peak in peaks.items() if peak <= b * GiB), None) for b in budgets}


def plan(config, per_device_batch: int, sizes: dict[str, int], budgets, policies=POLICIES) -> dict:
  """The plan of one config: an Estimate per remat policy (or for the config as it is, without model.remat) and
  the policy each budget needs."""
  tried = list(policies) if "remat" in config.model else [None]
  estimates, layout = {}, ""
  for policy in tried:
    step = compile_step(config, per_device_batch, policy)
    estimates[policy or "as configured"], layout = read_estimate(step, sizes)
    del step  # Its executable and trainer: host memory the next compile needs.
  return {
    "state_layout": layout,
    "estimates": estimates,
    "fits": choose({p: e.peak for p, e in estimates.items()}, budgets),
  }


def split_batch(spec: str, config, per_device_batch: int = 0, devices: int = 0) -> tuple[int, int | None, dict]:
  """(clips per device, devices, mesh sizes) of the run of recipe `spec`: `devices` (0: the recipe's
  REFERENCE_DEVICES) split data.batch_size, unless per_device_batch is given."""
  devices = devices or reference_devices(spec, config)
  if devices is None and not per_device_batch:
    raise ConfigError("no device count is known for this recipe: pass --devices or --per_device_batch")
  sizes = mesh_sizes(config.mesh, devices)
  mesh = jax.sharding.AbstractMesh(tuple(sizes.values()), tuple(sizes))
  ways = sharding.data_parallel_size(mesh, sharding.rules_from_config(config))
  if not per_device_batch and config.data.batch_size % ways:
    raise ConfigError(
      f"data.batch_size {config.data.batch_size} does not split over {ways} data-parallel devices;"
      " pass --per_device_batch"
    )
  return per_device_batch or config.data.batch_size // ways, devices, sizes


def plan_recipe(spec: str, overrides, args) -> dict:
  """Loads the recipe `spec` with `overrides` and plans it for the batch split and budgets `args` give."""
  config = cli.load_config(spec, overrides)
  per_device, devices, sizes = split_batch(spec, config, args.per_device_batch, args.devices)
  has_remat = "remat" in config.model
  result = {
    "config": spec,
    "model": config.model.name + (f"-{config.model.variant}" if "variant" in config.model else ""),
    "method": config.method.name,
    "clip": f"{config.data.num_frames}x{config.data.image_size}x{config.data.image_size}",
    "backend": jax.default_backend(),
    "devices": devices,
    "mesh": sizes,
    "per_device_batch": per_device,
    "configured_remat": config.model.remat if has_remat else None,
  }
  result.update(plan(config, per_device, sizes, args.budgets, args.remat))
  return result


def to_json(result: dict) -> dict:
  out = dict(result)
  if "estimates" in result:
    out["estimates"] = {
      p: dict(dataclasses.asdict(e), step=e.step, peak=e.peak, compile_s=round(e.compile_s, 1))
      for p, e in result["estimates"].items()
    }
    out["fits"] = {f"{b:g}": p for b, p in result["fits"].items()}
  return out


def _gib(n: int) -> str:
  gib = n / GiB
  return f"{gib:.0f}" if gib >= 100 else f"{gib:.2f}" if gib >= 1 else f"{gib:.3f}"


def _fits(policy: str | None) -> str:
  return policy or "does not fit"


def format_table(result: dict) -> str:
  """A plan as the text a user reads: one column per remat policy, GiB per device."""
  if "error" in result:
    return f"{result['config']}: {result['error']}"
  estimates = result["estimates"]
  devices = result["devices"]
  devices = f" of a run on {devices} device{'s' if devices > 1 else ''}" if devices else ""
  lines = [
    f"{result['config']}: {result['model']} {result['method']} {result['clip']}, {result['per_device_batch']} clips"
    f" per device{devices}, compiled for {result['backend']}; GiB per device, state {result['state_layout']}",
  ]
  rows = [
    ("remat", list(estimates)),
    ("state", [_gib(e.state) for e in estimates.values()]),
    ("batch", [_gib(e.batch) for e in estimates.values()]),
    ("temporaries", [_gib(e.temp) for e in estimates.values()]),
    ("outputs", [_gib(e.outputs) for e in estimates.values()]),
    ("peak", [_gib(e.peak) for e in estimates.values()]),
    ("compile s", [f"{e.compile_s:.1f}" for e in estimates.values()]),
  ]
  width = max(14, *(len(p) + 2 for p in estimates))
  lines += [f"  {name:<12}" + "".join(f"{v:>{width}}" for v in values) for name, values in rows]
  lines.append("  fits: " + "; ".join(f"{b:g} GB: {_fits(p)}" for b, p in result["fits"].items()))
  return "\n".join(lines)


def markdown(results: list[dict], budgets) -> str:
  """The plans of several recipes as one markdown table, one row each, under a line saying what the numbers are."""
  backends = sorted({r["backend"] for r in results if "backend" in r})
  lines = [
    f"Peak memory per device in GiB of the compiled train step ({', '.join(backends)} backend), per remat policy;"
    " the recipe's own policy in bold. A budget column names the least recompute that fits in it.",
    "",
  ]
  header = ["recipe", "model", "method", "clips / device (devices)", "state GiB"]
  header += ["peak GiB: " + " / ".join(POLICIES)] + [f"{b:g} GB" for b in budgets] + ["compile s"]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in results:
    if "error" in r:
      lines.append(f"| {r['config']} | " + " | ".join([r["error"]] + [""] * (len(header) - 2)) + " |")
      continue
    estimates = r["estimates"]
    first = next(iter(estimates.values()))
    if "as configured" in estimates:
      peaks = f"{_gib(first.peak)} (no remat option)"
    else:
      marked = lambda p: f"**{_gib(estimates[p].peak)}**" if p == r["configured_remat"] else _gib(estimates[p].peak)
      peaks = " / ".join(marked(p) if p in estimates else "-" for p in POLICIES)
    state = _gib(first.state) + ("" if r["state_layout"] == "replicated" else f" ({r['state_layout']})")
    batch = f"{r['per_device_batch']} ({r['devices'] or '?'})"
    cells = [r["config"], r["model"], r["method"], batch, state, peaks] + [_fits(p) for p in r["fits"].values()]
    cells.append(f"{sum(e.compile_s for e in estimates.values()):.0f}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def recipes(folder: str, only: list[str]) -> list[str]:
  """Specs of every recipe file in `folder` (or of the names in `only`), each default plus EXTRA_VARIANTS."""
  paths = sorted(glob.glob(os.path.join(folder, "*.py")))
  names = {os.path.splitext(os.path.basename(p))[0]: p for p in paths}
  unknown = [n for n in only if n not in names]
  if unknown:
    raise ConfigError(f"no recipe {', '.join(unknown)} in {folder}; there are {', '.join(names)}")
  specs = []
  for name, path in names.items():
    if not only or name in only:
      specs += [path] + [f"{path}:{v}" for v in EXTRA_VARIANTS.get(name, ())]
  return specs


def run(args, overrides) -> None:
  if not os.path.isdir(args.config):
    result = plan_recipe(args.config, overrides, args)
    print(json.dumps(to_json(result)) if args.json else format_table(result), flush=True)
    results = [result]
  else:
    results = []
    for spec in recipes(args.config, [n.strip() for n in args.only.split(",") if n.strip()]):
      try:
        result = plan_recipe(spec, overrides, args)
      except UserError as e:  # One recipe that cannot be planned leaves a row saying why.
        result = {"config": spec, "error": " ".join(str(e).split())}
      results.append(result)
      if not args.json:
        print(format_table(result), flush=True)
    if args.json:
      print(json.dumps([to_json(r) for r in results]), flush=True)
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(markdown(results, args.budgets))


def main(argv=None) -> int:
  args, overrides = parse_args(argv)
  return cli.run(lambda: run(args, overrides))


if __name__ == "__main__":
  sys.exit(main())
