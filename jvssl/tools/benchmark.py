"""Times the compiled train step of a config on this machine's devices and prints one JSON line.

  python -m jvssl.tools.benchmark --config=configs/videomae_k400.py:vit_s --batch_size=2 --steps=10 [--torch]
      [--config.train.compute_dtype=float32 ...]

The batch is random uint8 video already on the devices, so this measures the
step alone (jvssl.tools.bench_input measures the input). Reported: median step
time, clips/s, GFLOPs per step (XLA's cost analysis and the analytic matmul
count), MFU against the device's peak (`train.peak_tflops`, the table in
jvssl.flops, or on CPU a measured float32 matmul rate) and peak memory.
`--torch` also times Hugging Face's `VideoMAEForPreTraining` (AdamW step, same
shapes, tube masking) in the same run, one step of each in turn so that load
from elsewhere slows both alike, and prints the ratio of the medians; it needs
the optional torch and transformers packages and a VideoMAE/ViT config.
`--versus=field=value` (repeatable) also times the same config with those
overrides, in the same way, and prints its step time and the ratio: VideoMAE V2's
dual masking against plain VideoMAE is

  python -m jvssl.tools.benchmark --config=configs/videomae_k400.py:vit_b --batch_size=1 --steps=5 \
      --config.method.decoder_mask_ratio=0.5 --versus=method.decoder_mask_ratio=0.0
"""

import json
import os
import resource
import statistics
import sys
import time

from jvssl import cli  # First: it sets TF_CPP_MIN_LOG_LEVEL before anything imports TensorFlow.

# isort: split

import jax
import jax.numpy as jnp
import numpy as np

from jvssl import flops, models, sharding, trainer as trainer_lib
from jvssl.errors import UserError


def parse_args(argv):
  p = cli.parser(
    "python -m jvssl.tools.benchmark", __doc__, config_help="config file with :arg, like configs/videomae_k400.py:vit_s"
  )
  p.add_argument("--batch_size", type=int, default=0, help="global batch (default: the config's)")
  p.add_argument("--steps", type=int, default=10, help="timed steps, after --warmup untimed ones")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--torch", action="store_true", help="also time the PyTorch reference and print the ratio")
  p.add_argument(
    "--versus",
    action="append",
    default=[],
    metavar="FIELD=VALUE",
    help="also time the config with this override (repeatable: all of them at once) and print the ratio",
  )
  args, overrides = cli.parse(p, argv)
  if args.batch_size:
    overrides.append(f"data.batch_size={args.batch_size}")
  # The step is timed on random input: no data set needed, and a schedule needs a length.
  overrides += ["data.source=synthetic", "train.num_steps=1000"]
  return args, overrides


def _interleaved(fns, steps: int, warmup: int) -> list[list[float]]:
  """Seconds of each of `steps` calls of every fn, taking turns, so that a busy machine slows all alike."""
  for _ in range(warmup):
    for fn in fns:
      fn()
  times = [[] for _ in fns]
  for _ in range(steps):
    for fn, out in zip(fns, times):
      start = time.perf_counter()
      fn()
      out.append(time.perf_counter() - start)
  return times


def minor_faults() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def cpu_matmul_tflops(n: int = 2048, repeats: int = 5) -> float:
  """Measured float32 matmul rate of this CPU: the peak MFU is measured against there (no data sheet)."""
  a = jnp.ones((n, n), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  times = _interleaved([lambda: matmul(a).block_until_ready()], repeats, 1)[0]
  return 2 * n**3 / min(times) / 1e12


def peak_memory_gb() -> tuple[float, str]:
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**30, "device"
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process max RSS"


def jvssl_step(config, warmup: int):
  """(step function, facts) for jvssl's compiled train step on random uint8 clips, warmed up."""
  mesh = sharding.make_mesh(config.mesh)
  trainer = trainer_lib.Trainer(config, mesh, config.train.num_steps, 1000.0)
  data = config.data
  rng = np.random.default_rng(0)
  local = {
    "video": rng.integers(
      0, 256, (data.batch_size, data.num_frames, data.image_size, data.image_size, 3), dtype=np.uint8
    ),
    "label": np.zeros((data.batch_size,), np.int32),
  }
  batch = {k: jax.device_put(v, sharding.batch_sharding(mesh, trainer.rules, v.ndim)) for k, v in local.items()}
  state = trainer.init(config.seed)
  start = time.perf_counter()
  trainer.compile(state, batch)
  compile_s = time.perf_counter() - start
  holder = {"state": state, "faults": 0}

  def step():
    faults = minor_faults()
    holder["state"], metrics = trainer.step(holder["state"], batch)
    jax.block_until_ready(metrics)
    holder["faults"] += minor_faults() - faults

  _interleaved([step], 0, warmup)
  holder["faults"] = 0  # The first steps fault in buffers once; page_faults_per_step is about the rest.
  memory, memory_source = peak_memory_gb()  # Before anything else (--torch) shares the process.
  return step, {
    "trainer": trainer,
    "compile_s": compile_s,
    "memory": memory,
    "memory_source": memory_source,
    "holder": holder,
  }


def gflops_per_step(trainer) -> float | None:
  """XLA's count of the compiled step's FLOPs on all devices, in GFLOPs to 4 digits (None when it has none)."""
  if not trainer.step_flops:
    return None
  return float(f"{trainer.step_flops * jax.device_count() / 1e9:.4g}")


def jvssl_report(config, times: list[float], facts: dict) -> dict:
  median = statistics.median(times)
  trainer = facts["trainer"]
  kind = flops.device_kind()
  peak = flops.peak_tflops(kind, config.train.peak_tflops)
  peak_source = "config/table"
  if peak is None and jax.default_backend() == "cpu":
    peak, peak_source = cpu_matmul_tflops(), "measured float32 matmul"
  analytic = (
    flops.videomae_step_flops(config) if config.method.name == "videomae" and config.model.name == "vit" else None
  )
  utilisation = flops.mfu(trainer.step_flops, median, peak)
  data = config.data
  return {
    "config": config_name(config),
    "device": kind,
    "devices": jax.device_count(),
    "compute_dtype": str(models.dtypes(config)[0]),  # "auto" resolved.
    "batch_size": data.batch_size,
    "step_time_s": round(median, 4),
    "step_time_min_s": round(min(times), 4),
    "clips_per_s": round(data.batch_size / median, 3),
    "gflops_per_step": gflops_per_step(trainer),
    "gflops_per_step_analytic": float(f"{analytic / 1e9:.4g}") if analytic else None,
    "mfu": round(utilisation, 4) if utilisation is not None else None,
    "peak_tflops": round(peak, 3) if peak else None,
    "peak_source": peak_source,
    "peak_memory_gb": round(facts["memory"], 2),
    "memory_source": facts["memory_source"],
    # Host page faults per step: near zero when jvssl.cpu_memory's malloc settings are in effect.
    "page_faults_per_step": round(facts["holder"]["faults"] / len(times)),
    "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    "compile_s": round(facts["compile_s"], 1),
  }


def config_name(config) -> str:
  return (
    f"{config.model.name}-{config.model.variant} {config.method.name} {config.data.num_frames}x"
    f"{config.data.image_size}x{config.data.image_size}"
  )


def torch_step(config, warmup: int):
  """(step function, facts) for Hugging Face's VideoMAEForPreTraining with AdamW on the config's shapes,
  batch and mask ratio, warmed up."""
  from jvssl.models import convert

  try:
    import torch

    convert.load_torchvision()  # transformers imports it when installed.
    import transformers
  except ImportError:
    raise UserError("--torch needs torch and transformers (pip install 'jvssl[convert]')") from None
  from jvssl.models import vit

  if config.model.name != "vit" or config.method.name != "videomae":
    raise UserError("--torch compares VideoMAE with a ViT encoder only")
  width, depth, heads, mlp = vit.dims(config.model)
  pt, ph, pw = config.model.patch_size
  method, data = config.method, config.data
  hf_config = transformers.VideoMAEConfig(
    image_size=data.image_size,
    patch_size=ph,
    num_frames=data.num_frames,
    tubelet_size=pt,
    hidden_size=width,
    num_hidden_layers=depth,
    num_attention_heads=heads,
    intermediate_size=mlp,
    decoder_hidden_size=method.decoder_width,
    decoder_num_hidden_layers=method.decoder_depth,
    decoder_num_attention_heads=method.decoder_heads,
    decoder_intermediate_size=4 * method.decoder_width,
    norm_pix_loss=method.norm_pix_loss,
    use_mean_pooling=False,
    attn_implementation="sdpa",
  )
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.set_num_threads(os.cpu_count() or 1)
  model = transformers.VideoMAEForPreTraining(hf_config).to(device).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
  b = data.batch_size
  video = torch.randn(b, data.num_frames, 3, data.image_size, data.image_size, device=device)
  grid_t, spatial = data.num_frames // pt, (data.image_size // ph) * (data.image_size // pw)
  generator = torch.Generator().manual_seed(0)
  masked = torch.zeros(b, spatial, dtype=torch.bool)
  for i in range(b):  # Tube masking: the same spatial positions in every frame.
    masked[i, torch.randperm(spatial, generator=generator)[: int(method.mask_ratio * spatial)]] = True
  mask = masked.repeat(1, grid_t).to(device)
  autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=models.dtypes(config)[0] == jnp.bfloat16)

  def step():
    with autocast:
      loss = model(pixel_values=video, bool_masked_pos=mask).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device == "cuda":
      torch.cuda.synchronize()

  _interleaved([step], 0, warmup)
  return step, {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}


def torch_report(times: list[float], facts: dict, batch_size: int) -> dict:
  median = statistics.median(times)
  return {
    "torch_step_time_s": round(median, 4),
    "torch_step_time_min_s": round(min(times), 4),
    "torch_clips_per_s": round(batch_size / median, 3),
    **facts,
  }


def benchmark(args, overrides: list[str]) -> None:
  """Times the steps `args` asks for and prints the JSON line."""
  config = cli.load_config(args.config, overrides)
  steps = [jvssl_step(config, args.warmup)]
  if args.versus:
    # Loaded like the first, so the versus overrides win over everything else given.
    versus_config = cli.load_config(args.config, overrides + args.versus)
    steps.append(jvssl_step(versus_config, args.warmup))
  if args.torch:
    steps.append(torch_step(config, args.warmup))
  times = _interleaved([fn for fn, _ in steps], args.steps, 0)
  result = jvssl_report(config, times[0], steps[0][1])
  if args.versus:
    median = statistics.median(times[1])
    result["versus"] = args.versus
    result["versus_step_time_s"] = round(median, 4)
    result["versus_gflops_per_step"] = gflops_per_step(steps[1][1]["trainer"])
    # > 1: the config's step is faster than the versus one's (medians of steps taken in turn).
    result["speedup_vs_versus"] = round(result["versus_step_time_s"] / result["step_time_s"], 3)
  if args.torch:
    result.update(torch_report(times[-1], steps[-1][1], config.data.batch_size))
    # > 1: jvssl's step is faster than PyTorch's (medians of steps taken in turn).
    result["speedup_vs_torch"] = round(result["torch_step_time_s"] / result["step_time_s"], 3)
  print(json.dumps(result), flush=True)


def main(argv=None) -> int:
  args, overrides = parse_args(argv)
  return cli.run(lambda: benchmark(args, overrides))


if __name__ == "__main__":
  from jvssl import cpu_memory

  cpu_memory.reexec_with_tuned_malloc()
  sys.exit(main())
