"""Histograms of oriented gradients (Dalal & Triggs) in JAX, on device: MaskFeat's regression target.

As MaskFeat (Wei et al., CVPR 2022, `HOGLayerC`): every colour channel gets its own histograms
(rather than the strongest channel's), 9 unsigned orientation bins over 0-180 degrees, 8x8-pixel
cells, hard binning weighted by the gradient magnitude, each cell's histogram L2-normalised on its
own (no block normalisation). Gradients are central differences [-1, 0, 1] over a reflected border
and a cell holds the mean over its pixels, as in scikit-image's `skimage.feature.hog` with
`cells_per_block=(1, 1), block_norm="L2"`, which each channel reproduces (tests/models/test_hog.py).
MaskFeat's own layer takes Sobel gradients and no mean; after the normalisation the mean does not
matter, and the two gradients differ only in smoothing across the edge's direction.
"""

import einops
import jax
import jax.numpy as jnp


def hog(images: jax.Array, *, orientations: int = 9, cell: int = 8, eps: float = 1e-5) -> jax.Array:
  """images [..., H, W, C] -> per-channel histograms [..., H/cell, W/cell, C, orientations], float32.

  H and W must be multiples of `cell`. Each cell's histogram h (mean over its pixels of the
  magnitude in each bin) is returned as h / sqrt(|h|^2 + eps^2), scikit-image's "L2" norm.
  """
  *_, height, width, _ = images.shape
  if height % cell or width % cell:
    raise ValueError(f"HOG needs frames of whole {cell}x{cell} cells, not {height}x{width}")
  x = images.astype(jnp.float32)
  pad = [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
  # A reflected border makes the edge rows' gradient across the edge zero, as scikit-image sets it.
  x = jnp.pad(x, pad, mode="reflect")
  g_row = x[..., 2:, 1:-1, :] - x[..., :-2, 1:-1, :]
  g_col = x[..., 1:-1, 2:, :] - x[..., 1:-1, :-2, :]
  magnitude = jnp.hypot(g_row, g_col)
  angle = jnp.rad2deg(jnp.arctan2(g_row, g_col)) % 180.0
  bins = jnp.clip(jnp.floor(angle / (180.0 / orientations)), 0, orientations - 1).astype(jnp.int32)
  weighted = jnp.where(bins[..., None] == jnp.arange(orientations), magnitude[..., None], 0.0)  # [..., H, W, C, O]
  hist = einops.reduce(weighted, "... (h ch) (w cw) c o -> ... h w c o", "mean", ch=cell, cw=cell)
  return hist * jax.lax.rsqrt(jnp.sum(jnp.square(hist), axis=-1, keepdims=True) + eps * eps)


def tubelet_hog(video: jax.Array, patch_size: tuple[int, int, int], **kw) -> jax.Array:
  """video [B, T, H, W, C] -> HOG of each tubelet's frames [B, N, pt * (ph/cell) * (pw/cell) * C * orientations].

  N = T/pt * H/ph * W/pw tokens in (t h w) order, as the ViT's; a token's target is the histograms of
  the cells its tubelet covers in each of its frames.
  """
  cell = kw.get("cell", 8)
  pt, ph, pw = patch_size
  if ph % cell or pw % cell:
    raise ValueError(f"HOG cells of {cell} pixels must tile the {ph}x{pw} patches")
  return einops.rearrange(
    hog(video, **kw),
    "b (t pt) (h ch) (w cw) c o -> b (t h w) (pt ch cw c o)",
    pt=pt,
    ch=ph // cell,
    cw=pw // cell,
  )
