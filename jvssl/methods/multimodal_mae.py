"""Multimodal masked modelling: video tubes and caption words masked together, reconstructed through one encoder.

With `fusion` "joint" or "video_first" the video encoder's blocks run over one sequence, the visible
tubelets (VideoMAE: masked ones are dropped) followed by every caption token, with a learned modality
embedding on the text and its masked words replaced by a mask token (BERT: a caption is short, so it is
kept whole). `fusion="joint"`: each video token attends to the words and each word to the video (VATT's
modality-agnostic and CAV-MAE's joint layers), so a masked shape word is predicted from the pixels and a
masked tube from the words. `fusion="video_first"`: words attend to the video but the video only to itself.
`fusion="bottleneck"` (MBT, Nagrani et al. 2021): the two modalities meet only through
`num_bottlenecks` learned fusion tokens, from block `fusion_layer` on; before it each attends to itself alone,
and after it video and words attend to themselves and to the bottleneck tokens, which attend to everything
(MBT's default: 4 tokens, fusion from layer 8 of 12). jvssl shares the encoder's weights between modalities,
MBT's shared-weight variant. `fusion="late"` (the default): the words come from a text tower of their own and
read the encoded video in a few fusion blocks (a masked-language model conditioned on the video), so the video
encoder shares no weight with the text. On the synthetic set only late fusion keeps the frozen video features near
VideoMAE's; with the encoder's weights shared, 72 byte tokens of caption for every 18 visible video
tokens, they probe below the random encoder's (README, "Multimodal").
Losses: VideoMAE's pixel regression on the masked tubes (its decoder sees only video tokens) plus
`text_weight` x cross-entropy of the masked caption tokens. With the byte tokenizer whole words are
masked (a word's letters would give each other away); other tokenizers mask tokens. `caption_drop_prob`
hides the caption from a share of the clips (modality dropout), for joint fusion.

Evaluation reads the video encoder alone on video (`embed_video`), so its probes compare with VideoMAE's.
"""

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.data import tokenizers
from jvssl.errors import ConfigError
from jvssl.methods import videomae
from jvssl.methods.base import Inputs
from jvssl.models import layers, text as text_model

FUSIONS = ("late", "joint", "video_first", "bottleneck")


class MultimodalMAEModel(videomae.VideoMAEModel):
  """VideoMAE's encoder and decoder, plus a text embedding in the encoder's width and a token head."""

  def __init__(self, config, *, rngs: nnx.Rngs):
    super().__init__(config, rngs=rngs)
    if config.model.pos_embed == "rope" or not all(isinstance(b, layers.Block) for b in self.encoder.blocks):
      raise ConfigError(
        "multimodal_mae runs the encoder's joint-attention blocks on video and text: "
        "use a ViT with model.pos_embed other than 'rope' and joint attention"
      )
    tokenizer = tokenizers.build(config.data.text)
    self.pad_id = tokenizer.pad_id
    self.fusion = config.method.fusion
    kw = models.dtype_kw(config)
    if self.fusion == "late":
      # Its own text tower (bidirectional; one extra id: the mask), and fusion blocks in the text's width.
      text_config = config.method.text.copy_and_resolve_references()
      text_config.causal, text_config.pooling, text_config.projection_dim = False, "mean", 0
      self.mask_id = tokenizer.vocab_size
      self.text = text_model.TextTransformer(
        text_config, vocab_size=tokenizer.vocab_size + 1, pad_id=tokenizer.pad_id, rngs=rngs, **kw
      )
      width = self.text.width
      self.video_to_text = layers.Dense(self.encoder.width, width, axes=("embed", None), rngs=rngs, **kw)
      self.fusion_blocks = nnx.List(
        [
          layers.Block(width, text_config.num_heads, int(width * text_config.mlp_ratio), rngs=rngs, **kw)
          for _ in range(config.method.fusion_depth)
        ]
      )
      self.text_head = layers.Dense(width, tokenizer.vocab_size, axes=("embed", "vocab"), rngs=rngs, **kw)
      return
    width, param_dtype = self.encoder.width, models.dtypes(config)[1]
    normal = nnx.initializers.normal(0.02)
    self.token_embed = layers.param(rngs, normal, (tokenizer.vocab_size, width), ("vocab", "embed"), param_dtype)
    self.text_pos_embed = layers.param(rngs, normal, (config.data.text.max_len, width), (None, "embed"), param_dtype)
    self.text_type = layers.param(rngs, normal, (width,), ("embed",), param_dtype)
    self.text_mask_token = layers.param(rngs, normal, (width,), ("embed",), param_dtype)
    self.text_head = layers.Dense(
      width, tokenizer.vocab_size, axes=("embed", "vocab"), **models.dtype_kw(config), rngs=rngs
    )
    if self.fusion == "bottleneck":
      shape = (config.method.num_bottlenecks, width)
      self.bottlenecks = layers.param(rngs, normal, shape, (None, "embed"), param_dtype)
      self.fusion_layer = config.method.fusion_layer

  def __call__(self, video, visible, masked, tokens, text_masked, caption_hidden, rng=None):
    """-> (pixel predictions of the `masked` tubelets [B, Nm, P], token logits [B, L, vocab]).

    tokens: int32 [B, L] caption ids; text_masked: bool [B, L], the ones replaced by the mask token;
    caption_hidden: bool [B], clips whose video tokens do not see their caption (and whose words are not scored).
    """
    if self.fusion == "late":
      return self._late(video, visible, masked, tokens, text_masked, rng)
    enc = self.encoder
    v = enc.embed(video, visible)
    length = tokens.shape[1]
    t = jnp.take(self.token_embed[...], tokens, axis=0).astype(v.dtype)
    t = jnp.where(text_masked[..., None], self.text_mask_token[...].astype(v.dtype), t)
    t = t + (self.text_pos_embed[:length] + self.text_type[...]).astype(v.dtype)
    nv, nb = v.shape[1], (self.bottlenecks.shape[0] if self.fusion == "bottleneck" else 0)
    parts = [v] + (
      [jnp.broadcast_to(self.bottlenecks[...].astype(v.dtype), (v.shape[0], nb, v.shape[2]))] if nb else []
    )
    x = jnp.concatenate(parts + [t], axis=1)
    # Every token attends to every video token and to the caption's non-pad tokens, unless the clip's caption
    # is hidden (caption_hidden [B]).
    shown = (tokens != self.pad_id) & ~caption_hidden[:, None]
    keys = jnp.concatenate([jnp.ones((v.shape[0], nv + nb), bool), shown], axis=1)
    attend = keys[:, None, None, :]  # [B, 1, 1, N]
    position = jnp.arange(x.shape[1])
    is_video, is_text = position < nv, position >= nv + nb
    if self.fusion == "video_first":  # Video queries read video keys only; word queries read both.
      attend = attend & (~is_video[:, None] | is_video[None, :])[None, None]  # [B, 1, N, N]
    masks = [attend] * len(enc.blocks)
    if nb:
      same = (is_video[:, None] == is_video[None, :]) & (is_text[:, None] == is_text[None, :])
      # From fusion_layer on: a video or word query also reads the bottlenecks, which read everything.
      is_bottleneck = ~is_video & ~is_text
      fused = same | is_bottleneck[None, :] | is_bottleneck[:, None]
      masks = [attend & (same if i < self.fusion_layer else fused)[None, None] for i in range(len(enc.blocks))]
    rngs = [None] * len(enc.blocks) if rng is None else list(jax.random.split(rng, len(enc.blocks)))
    for block, block_rng, block_mask in zip(enc.blocks, rngs, masks):
      x = block(x, block_rng, None, block_mask)
    x = enc.norm(x)
    return self.decode(x[:, :nv], visible, masked), self.text_head(x[:, nv + nb :])

  def _late(self, video, visible, masked, tokens, text_masked, rng):
    """Late fusion: VideoMAE's encoder and decoder untouched; the masked caption's tokens from the text tower
    read the encoded video in the fusion blocks, whose video rows attend to video only."""
    encoded = self.encoder.encode(self.encoder.embed(video, visible), rng, visible)
    t = self.text(jnp.where(text_masked, self.mask_id, tokens))["tokens"]
    v = self.video_to_text(encoded).astype(t.dtype)
    x = jnp.concatenate([v, t], axis=1)
    is_video = jnp.arange(x.shape[1]) < v.shape[1]
    keys = jnp.concatenate([jnp.ones(v.shape[:2], bool), tokens != self.pad_id], axis=1)
    attend = keys[:, None, None, :] & (~is_video[:, None] | is_video[None, :])[None, None]
    for block in self.fusion_blocks:
      x = block(x, None, None, attend)
    return self.decode(encoded, visible, masked), self.text_head(x[:, v.shape[1] :])


def word_mask(rng, tokens, ratio: float, space_id: int, special: jax.Array) -> jax.Array:
  """bool [B, L]: whole words (runs between `space_id` tokens) chosen with probability `ratio`, at least one
  word per caption; special tokens (pad, start, end) and the spaces themselves are never masked."""
  word = jnp.cumsum(tokens == space_id, axis=1)  # [B, L]: which word each token is in.
  draws = jax.random.uniform(rng, tokens.shape)  # One draw per word index (row-wise), read through `word`.
  chosen = jnp.take_along_axis(draws, word, axis=1) < ratio
  text = ~special & (tokens != space_id)
  # The caption's first word when none was chosen, so that every caption gives the loss something.
  none = ~jnp.any(chosen & text, axis=1, keepdims=True)
  first = word == jnp.min(jnp.where(text, word, tokens.shape[1]), axis=1, keepdims=True)
  return text & (chosen | (none & first))


@registry.METHODS.register("multimodal_mae")
class MultimodalMAE(videomae.VideoMAE):
  def __init__(self, config, run):
    super().__init__(config, run)
    tokenizer = tokenizers.build(config.data.text)
    self.special_ids = (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id)
    # Bytes: words are the runs between spaces, masked whole; other tokenizers' tokens are masked one by one.
    self.space_id = tokenizer.encode(" ")[0] if config.data.text.tokenizer == "bytes" else None

  @staticmethod
  def default_config() -> ConfigDict:
    c = videomae.VideoMAE.default_config()
    c.text_mask_ratio = 0.5  # Of the caption's words (or tokens); captions are short and say what the video shows.
    c.text_weight = 1.0
    # With joint fusion, the share of clips whose video tokens do not see the caption (modality dropout):
    # evaluation reads the encoder on video alone. Such clips' words are not scored.
    c.caption_drop_prob = 0.0
    # "joint": every token attends to every token (VATT, CAV-MAE's joint layers). "video_first": video tokens
    # attend to video only and words to both, so the encoder's video path is VideoMAE's, and what the words
    # need from the video has to be in the video tokens.
    c.fusion = "late"
    # fusion "late": the words come from a text tower of their own (`text`, made bidirectional) and read the
    # encoded video in `fusion_depth` blocks; the video encoder shares no weight with the text.
    c.fusion_depth = 2
    # fusion "bottleneck" (MBT): the fusion tokens, and the first encoder block in which the modalities meet
    # through them (MBT: 4 tokens, layer 8 of 12).
    c.num_bottlenecks = 4
    c.fusion_layer = 8
    c.text = text_model.default_config()
    return c

  def inputs(self):
    return Inputs(modalities=("video", "text"))

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    if self.config.method.fusion not in FUSIONS:
      raise ConfigError(f"method.fusion must be one of {FUSIONS}, not {self.config.method.fusion!r}")
    method, depth = self.config.method, self.config.model.depth
    if method.fusion == "bottleneck" and (method.num_bottlenecks < 1 or not 0 <= method.fusion_layer <= depth - 2):
      # Words reach a video token (and back) in two fused blocks: into the bottlenecks, then out of them.
      raise ConfigError(
        f"method.fusion='bottleneck' needs method.num_bottlenecks >= 1 and 0 <= method.fusion_layer <= "
        f"model.depth - 2 = {depth - 2}, not {method.num_bottlenecks} and {method.fusion_layer}"
      )
    if self.config.method.decoder_mask_ratio:
      raise ConfigError("multimodal_mae has no dual masking: set method.decoder_mask_ratio=0")
    if self.config.data.text.num_captions != 1:
      raise ConfigError("multimodal_mae reads one caption per clip: set data.text.num_captions=1")
    return MultimodalMAEModel(self.config, rngs=rngs)

  def loss(self, model, batch, rng, step):
    method = self.config.method
    video, tokens = batch["video"], batch["text"]
    mask_rng, text_rng, drop_rng = jax.random.split(rng, 3)
    visible, masked = videomae.MASKS[method.mask_type](mask_rng, video.shape[0], model.encoder.grid, method.mask_ratio)
    special = jnp.isin(tokens, jnp.asarray(self.special_ids))
    if self.space_id is not None:
      text_masked = word_mask(text_rng, tokens, method.text_mask_ratio, self.space_id, special)
    else:
      text_masked = ~special & (jax.random.uniform(text_rng, tokens.shape) < method.text_mask_ratio)
    hidden_rng, drop_rng = jax.random.split(drop_rng)
    caption_hidden = jax.random.uniform(hidden_rng, (video.shape[0],)) < method.caption_drop_prob
    text_masked &= ~caption_hidden[:, None]
    pred, logits = model(video, visible, masked, tokens, text_masked, caption_hidden, drop_rng)
    target = videomae.pixel_targets(video, model.encoder.patch_size, method.norm_pix_loss)
    target = jnp.take_along_axis(target, masked[..., None], axis=1)
    video_loss = jnp.mean(jnp.square(pred.astype(jnp.float32) - target))
    logits = logits.astype(jnp.float32)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], axis=-1)[..., 0]
    weights = text_masked.astype(jnp.float32)
    count = jnp.maximum(weights.sum(), 1.0)
    text_loss = jnp.sum(nll * weights) / count
    accuracy = jnp.sum((jnp.argmax(logits, -1) == tokens) * weights) / count
    loss = video_loss + method.text_weight * text_loss
    return loss, {"reconstruction_mse": video_loss, "text_loss": text_loss, "text_accuracy": accuracy}
