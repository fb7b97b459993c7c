"""Pictures of what a model learned, as PNG files in `<workdir>/pictures/` and, given a writer, TensorBoard images.

* reconstruction.png (VideoMAE only): for a few test clips, rows of frames: the original, what the encoder sees
  (masked tubelets grey), and the decoder's reconstruction (visible tubelets as given, masked ones predicted; a
  normalised-pixel prediction is put back in the tubelet's own mean and spread, as VideoMAE's visualisation does).
* attention.png (ViT encoders): the same clips, and over them how much attention each tubelet receives in the
  encoder's last block (summed over the tokens that attend, averaged over the heads).
* tsne.png: a 2-D t-SNE (scikit-learn) of test clips' embeddings, one colour per class.
* retrieval.png: test clips (left) and the 5 training clips nearest by cosine similarity, middle frames, framed in
  green when of the query's class and red when not.

Drawn with PIL (matplotlib is not a dependency). `draw` runs them all on one model.
"""

import logging

import einops
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx
from ml_collections import ConfigDict
from PIL import Image, ImageDraw, ImageFont

from jvssl.data import pipeline, synthetic
from jvssl.data.device import normalize_video
from jvssl.evaluate import features, host_clips
from jvssl.methods import videomae

log = logging.getLogger("jvssl")

# Tableau's 10 colours, then greys: one per class.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))
PALETTE += ((227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
GREY = 128


def default_config() -> ConfigDict:
  return ConfigDict(
    {
      "split": "test",
      "gallery_split": "train",
      "num_reconstructions": 3,
      "num_tsne": 512,  # Test clips in the embedding map.
      "num_gallery": 512,  # Training clips the retrieval examples search.
      "num_queries": 4,
      "scale": 4,  # Pixels per frame pixel.
      "embedding": "video",
      "seed": 0,
    }
  )


def _font(size: int = 12):
  return ImageFont.load_default(size=size)


def _clips(config, split: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
  """The first `limit` clips of `split` as the evaluators see them: (uint8 [N, T, H, W, 3], int labels [N])."""
  data = features.eval_data_config(config)
  batch_size = config.eval.batch_size
  ds, n = pipeline.eval_dataset(data, split, batch_size, limit=limit)
  batches = list(pipeline.numpy_batches(ds))
  video = np.concatenate([b["video"] for b in batches])[:n]
  return video, np.concatenate([b["label"] for b in batches])[:n]


def class_names(config) -> tuple[str, ...] | None:
  if config.data.source == "synthetic":
    return synthetic.CLASS_NAMES[config.data.synthetic.label]
  return None


def _label(names, y: int) -> str:
  return names[y] if names is not None and y < len(names) else str(y)


def _grid(rows: list[list[np.ndarray]], scale: int, row_titles=(), pad: int = 2, title_width: int = 0) -> Image.Image:
  """Frames uint8 [H, W, 3] in rows -> one image, each frame scaled `scale` times, with a title left of each row."""
  h, w = rows[0][0].shape[:2]
  cell_h, cell_w = h * scale + pad, w * scale + pad
  width = title_width + max(len(r) for r in rows) * cell_w
  image = Image.new("RGB", (width, len(rows) * cell_h), (255, 255, 255))
  draw = ImageDraw.Draw(image)
  for i, row in enumerate(rows):
    for j, frame in enumerate(row):
      tile = Image.fromarray(frame).resize((w * scale, h * scale), Image.NEAREST)
      image.paste(tile, (title_width + j * cell_w, i * cell_h))
    if i < len(row_titles):
      draw.text((4, i * cell_h + cell_h // 2 - 6), row_titles[i], fill=(0, 0, 0), font=_font())
  return image


def reconstruct(predictor, config, video: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """video uint8 [B, T, H, W, 3] -> (masked, reconstructed) uint8 [B, T, H, W, 3] by the VideoMAE model."""
  model_cfg, method = config.model, config.method

  @jax.jit
  def run(params, rest, video):
    model = nnx.merge(predictor.graphdef, params, rest, copy=True)
    x = normalize_video(video, config.data)
    mask_fn = videomae.MASKS[method.mask_type]
    visible, masked = mask_fn(jax.random.key(seed), x.shape[0], model.encoder.grid, method.mask_ratio)
    pred = model(x, visible, masked).astype(jnp.float32)  # [B, Nm, pt*ph*pw*3]
    patches = videomae.pixel_targets(x, model.encoder.patch_size, normalize=False)  # [B, N, pt*ph*pw*3]
    pred = pred.reshape(*pred.shape[:2], -1, 3)
    if method.norm_pix_loss:
      # Undo pixel_targets' per-tubelet, per-channel standardisation with the original tubelet's statistics.
      own = jnp.take_along_axis(patches, masked[..., None], axis=1).reshape(pred.shape)
      pred = pred * (jnp.sqrt(own.var(axis=2, ddof=1, keepdims=True)) + 1e-6) + own.mean(axis=2, keepdims=True)
    pred = pred.reshape(*pred.shape[:2], -1)
    rows = jnp.arange(x.shape[0])[:, None]
    recon = patches.at[rows, masked].set(pred)
    grey = (GREY - jnp.asarray(config.data.mean) * 255.0) / (jnp.asarray(config.data.std) * 255.0)
    hidden = patches.reshape(*patches.shape[:2], -1, 3).at[rows, masked].set(grey).reshape(patches.shape)
    return hidden, recon

  hidden, recon = jax.device_get(run(predictor.params, predictor.rest, video))
  pt, ph, pw = model_cfg.patch_size
  t, h, w = video.shape[1] // pt, video.shape[2] // ph, video.shape[3] // pw
  mean, std = np.asarray(config.data.mean) * 255.0, np.asarray(config.data.std) * 255.0

  def to_video(p):
    v = einops.rearrange(
      p, "b (t h w) (pt ph pw c) -> b (t pt) (h ph) (w pw) c", t=t, h=h, w=w, pt=pt, ph=ph, pw=pw, c=3
    )
    return np.clip(np.round(v * std + mean), 0, 255).astype(np.uint8)

  return to_video(hidden), to_video(recon)


def reconstruction_picture(predictor, config, video: np.ndarray, cfg) -> Image.Image:
  hidden, recon = reconstruct(predictor, config, video, cfg.seed)
  rows, titles = [], []
  for i in range(len(video)):
    rows += [list(video[i]), list(hidden[i]), list(recon[i])]
    titles += [f"clip {i}", "masked", "reconstructed"]
  return _grid(rows, cfg.scale, titles, title_width=90)


def received_attention(predictor, config, video: np.ndarray) -> np.ndarray:
  """video uint8 [B, T, H, W, 3] -> the attention each patch token receives in the encoder's last block, summed
  over the queries and averaged over the heads: [B, T', H', W'] (a ViT encoder with joint attention)."""

  @jax.jit
  def run(params, rest, video):
    encoder = nnx.merge(predictor.graphdef, params, rest, copy=True).encoder
    return encoder.last_attention(normalize_video(video, config.data)).sum(axis=2).mean(axis=1)

  grid = nnx.merge(predictor.graphdef, predictor.params, predictor.rest).encoder.grid
  return np.asarray(jax.device_get(run(predictor.params, predictor.rest, video))).reshape(len(video), *grid)


def attention_picture(video: np.ndarray, received: np.ndarray, scale: int) -> Image.Image:
  """Each clip's frames, and over them the attention its tokens receive (received [B, T', H', W'], as
  `received_attention`), from black (least, in that clip) through red to yellow (most)."""
  b, t, h, w = video.shape[:4]
  heat = received / np.maximum(received.max(axis=(1, 2, 3), keepdims=True), 1e-12)
  heat = heat.repeat(t // heat.shape[1], 1).repeat(h // heat.shape[2], 2).repeat(w // heat.shape[3], 3)
  ramp = np.stack([np.minimum(1.0, 2 * heat), np.clip(2 * heat - 1, 0.0, 1.0), np.zeros_like(heat)], axis=-1)
  overlay = np.round(0.35 * video + 0.65 * 255.0 * ramp).astype(np.uint8)
  rows, titles = [], []
  for i in range(b):
    rows += [list(video[i]), list(overlay[i])]
    titles += [f"clip {i}", "attention in"]
  return _grid(rows, scale, titles, title_width=90)


def tsne_picture(x: np.ndarray, y: np.ndarray, names, seed: int, size: int = 560) -> Image.Image:
  """x [N, D] embeddings, y [N] classes -> a scatter of their 2-D t-SNE with a legend."""
  from sklearn.manifold import TSNE

  perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
  xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(np.asarray(x, np.float64))
  xy = (xy - xy.min(0)) / (np.ptp(xy, axis=0) + 1e-9)
  legend = 110
  image = Image.new("RGB", (size + legend, size), (255, 255, 255))
  draw = ImageDraw.Draw(image)
  margin = 12
  for (px, py), c in zip(margin + xy * (size - 2 * margin), y):
    draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=PALETTE[int(c) % len(PALETTE)])
  for k, c in enumerate(sorted(set(int(c) for c in y))):
    draw.rectangle((size + 6, 10 + 16 * k, size + 16, 20 + 16 * k), fill=PALETTE[c % len(PALETTE)])
    draw.text((size + 22, 8 + 16 * k), _label(names, c), fill=(0, 0, 0), font=_font())
  return image


def retrieval_picture(queries, query_y, gallery, gallery_y, query_x, gallery_x, names, scale: int) -> Image.Image:
  """Each query clip's middle frame, then those of its 5 nearest gallery clips (cosine similarity of *_x [N, D]),
  framed green when of the query's class, red when not."""
  unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
  order = np.argsort(-(unit(query_x) @ unit(gallery_x).T), axis=1, kind="stable")[:, :5]
  middle = lambda clip: clip[len(clip) // 2]
  rows, titles = [], []
  for q, nearest in enumerate(order):
    row = [_framed(middle(queries[q]), (255, 255, 255))]
    row += [
      _framed(middle(gallery[j]), (40, 170, 40) if gallery_y[j] == query_y[q] else (210, 40, 40)) for j in nearest
    ]
    rows.append(row)
    titles.append(_label(names, int(query_y[q])))
  return _grid(rows, scale, titles, title_width=90)


def _framed(frame: np.ndarray, colour) -> np.ndarray:
  out = np.empty((frame.shape[0] + 4, frame.shape[1] + 4, 3), np.uint8)
  out[:] = colour
  out[2:-2, 2:-2] = frame
  return out


def draw(config, predictor, mesh, workdir, *, writer=None, step: int = 0, cfg=None) -> dict[str, str]:
  """Every picture that applies to this model, written to <workdir>/pictures/<name>.png (and to `writer`).

  Returns {name: path}. The reconstructions need a VideoMAE model; the others a method with `embed_<embedding>`.
  """
  cfg = cfg or default_config()
  names = class_names(config)
  pictures = {}
  test_video, test_y = _clips(config, cfg.split, max(cfg.num_tsne, cfg.num_queries, cfg.num_reconstructions))
  if config.method.name == "videomae":
    pictures["reconstruction"] = reconstruction_picture(predictor, config, test_video[: cfg.num_reconstructions], cfg)
  else:
    log.info("pictures: no reconstructions for method '%s' (VideoMAE only)", config.method.name)
  encoder = getattr(nnx.merge(predictor.graphdef, predictor.params, predictor.rest), "encoder", None)
  if hasattr(encoder, "last_attention") and config.model.get("attention") == "joint":
    clips = test_video[: cfg.num_reconstructions]
    pictures["attention"] = attention_picture(clips, received_attention(predictor, config, clips), cfg.scale)
  else:
    log.info("pictures: no attention maps (a ViT encoder with joint attention only)")
  cache = features.FeatureCache(config, predictor, mesh)
  try:
    embed = cache.function(cfg.embedding, "mean")
  except features.Unavailable as e:
    log.info("pictures: no embedding map or retrieval examples: %s", e)
  else:
    test_x = host_clips.predict_clips(config, mesh, embed, test_video)
    pictures["tsne"] = tsne_picture(test_x[: cfg.num_tsne], test_y[: cfg.num_tsne], names, cfg.seed)
    gallery, gallery_y = _clips(config, cfg.gallery_split, cfg.num_gallery)
    gallery_x = host_clips.predict_clips(config, mesh, embed, gallery)
    # Queries of different classes where the split has them: the first clip of each of the first classes.
    first = [int(np.flatnonzero(test_y == c)[0]) for c in sorted(set(test_y.tolist()))][: cfg.num_queries]
    pictures["retrieval"] = retrieval_picture(
      test_video[first], test_y[first], gallery, gallery_y, test_x[first], gallery_x, names, cfg.scale
    )
  paths = {}
  if jax.process_index() != 0:
    return paths
  out = epath.Path(workdir) / "pictures"
  out.mkdir(parents=True, exist_ok=True)
  for name, image in pictures.items():
    path = out / f"{name}.png"
    with path.open("wb") as f:
      image.save(f, format="PNG")
    paths[name] = str(path)
    log.info("picture %s: %s", name, path)
  if writer is not None and pictures:
    writer.write_images(step, {f"pictures/{k}": np.asarray(v)[None] for k, v in pictures.items()})
  return paths
