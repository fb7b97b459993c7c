"""FLOPs per train step, device peaks and model FLOPs utilisation (MFU).

The train loop takes the FLOPs from XLA's cost analysis of the compiled step;
`videomae_step_flops` is the analytic count of the matmuls, which the tests
check against it.
"""

import math

import jax

from jvssl.models import vit

# Dense bf16 TFLOP/s of one device (one chip for TPUs), from the vendors' data sheets.
# Keys are matched as lower-case substrings of jax.Device.device_kind, longest first.
PEAK_TFLOPS = {
  "tpu v4": 275.0,
  "tpu v5 lite": 197.0,  # v5e
  "tpu v5e": 197.0,
  "tpu v5p": 459.0,
  "tpu v5": 459.0,
  "tpu v6 lite": 918.0,  # v6e (Trillium)
  "tpu v6e": 918.0,
  "a100": 312.0,
  "h100": 989.0,  # SXM; the PCIe card is 756.
  "h200": 989.0,
}


def peak_tflops(device_kind: str, configured: float = 0.0) -> float | None:
  """Peak TFLOP/s of one device: `configured` if > 0, else from PEAK_TFLOPS; None when unknown (CPUs)."""
  if configured > 0:
    return configured
  kind = device_kind.lower()
  for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
    if key in kind:
      return PEAK_TFLOPS[key]
  return None


def compiled_flops(compiled) -> float | None:
  """FLOPs of one execution of a compiled jax function on one device, from XLA's cost analysis."""
  try:
    analysis = compiled.cost_analysis()
  except NotImplementedError:  # Some backends do not report costs.
    return None
  if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per partition.
    analysis = analysis[0] if analysis else None
  value = (analysis or {}).get("flops")
  return float(value) if value and value > 0 else None


def mfu(step_flops: float | None, seconds_per_step: float, peak: float | None) -> float | None:
  """Fraction of the device's peak that the model's FLOPs reach; None without FLOPs or a peak."""
  if not step_flops or not peak or seconds_per_step <= 0:
    return None
  return step_flops / seconds_per_step / (peak * 1e12)


def _block_flops(tokens: int, width: int, mlp: int) -> float:
  """Forward matmul FLOPs of one transformer block on one sequence of `tokens`."""
  projections = 2 * tokens * width * (3 * width + width + 2 * mlp)  # qkv, out, mlp in + out
  attention = 2 * 2 * tokens * tokens * width  # q k^T and p v
  return projections + attention


def videomae_step_flops(config, batch_size: int | None = None) -> float:
  """Matmul FLOPs of one VideoMAE train step (forward + backward) with a ViT encoder, whole batch.

  Backward costs twice the forward for every matmul with trainable weights
  (gradients for inputs and for weights), except the tubelet embedding, whose
  input is the video (weight gradient only). Elementwise work is left out. With dual masking
  (method.decoder_mask_ratio, VideoMAE V2) the decoder sees the visible tokens and the masked ones it keeps.
  """
  width, depth, _, mlp = vit.dims(config.model)
  data, method = config.data, config.method
  pt, ph, pw = config.model.patch_size
  grid = (data.num_frames // pt, data.image_size // ph, data.image_size // pw)
  n = math.prod(grid)
  if method.mask_type == "tube":
    n_masked = grid[0] * int(method.mask_ratio * grid[1] * grid[2])
  else:
    n_masked = int(method.mask_ratio * n)
  n_visible = n - n_masked
  patch = pt * ph * pw * 3
  dec = method.decoder_width
  embed = 2 * n_visible * patch * width  # Only the visible tubelets are embedded.
  encoder = depth * _block_flops(n_visible, width, mlp)
  n_decoded = n_masked - int(n_masked * method.decoder_mask_ratio)  # As videomae.decoder_subset.
  decoder = (
    2 * n_visible * width * dec
    + method.decoder_depth * _block_flops(n_visible + n_decoded, dec, 4 * dec)
    + 2 * n_decoded * dec * patch
  )
  per_clip = 2 * embed + 3 * (encoder + decoder)
  return float(per_clip * (batch_size or data.batch_size))


def device_kind() -> str:
  return jax.devices()[0].device_kind


def throughput(steps_per_second: float, batch_size: int, step_flops: float | None, peak: float | None) -> dict:
  """Numbers for the log line: steps/s, clips/s per device, TFLOP/s per device and MFU."""
  out = {"steps_per_s": steps_per_second, "clips_per_s_per_device": steps_per_second * batch_size / jax.device_count()}
  if step_flops:
    out["tflops_per_device"] = step_flops * steps_per_second / 1e12
    utilisation = mfu(step_flops, 1.0 / steps_per_second if steps_per_second > 0 else 0.0, peak)
    if utilisation is not None:
      out["mfu"] = utilisation
  return out
