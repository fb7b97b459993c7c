"""Multimodal masked modelling: video tubes and caption words masked together, reconstructed through one encoder.

The video encoder's blocks run over one sequence, the visible tubelets (VideoMAE: masked ones are
dropped) followed by every caption token, with a learned modality embedding on the text and its masked
words replaced by a mask token (BERT: a caption is short, so it is kept whole). Fusion is joint, as in
VATT's modality-agnostic and CAV-MAE's joint layers: each video token attends to the words and each
word to the video, so a masked shape word is predicted from the pixels and a masked tube from the words.
Losses: VideoMAE's pixel regression on the masked tubes (its decoder sees only video tokens) plus
`text_weight` x cross-entropy of the masked caption tokens. With the byte tokenizer whole words are
masked (a word's letters would give each other away); other tokenizers mask tokens.

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
from jvssl.models import layers


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
    width, param_dtype = self.encoder.width, models.dtypes(config)[1]
    normal = nnx.initializers.normal(0.02)
    self.token_embed = layers.param(rngs, normal, (tokenizer.vocab_size, width), ("vocab", "embed"), param_dtype)
    self.text_pos_embed = layers.param(rngs, normal, (config.data.text.max_len, width), (None, "embed"), param_dtype)
    self.text_type = layers.param(rngs, normal, (width,), ("embed",), param_dtype)
    self.text_mask_token = layers.param(rngs, normal, (width,), ("embed",), param_dtype)
    self.text_head = layers.Dense(
      width, tokenizer.vocab_size, axes=("embed", "vocab"), **models.dtype_kw(config), rngs=rngs
    )
    self.pad_id = tokenizer.pad_id

  def __call__(self, video, visible, masked, tokens, text_masked, rng=None):
    """-> (pixel predictions of the `masked` tubelets [B, Nm, P], token logits [B, L, vocab]).

    tokens: int32 [B, L] caption ids; text_masked: bool [B, L], the ones replaced by the mask token.
    """
    enc = self.encoder
    v = enc.embed(video, visible)
    length = tokens.shape[1]
    t = jnp.take(self.token_embed[...], tokens, axis=0).astype(v.dtype)
    t = jnp.where(text_masked[..., None], self.text_mask_token[...].astype(v.dtype), t)
    t = t + (self.text_pos_embed[:length] + self.text_type[...]).astype(v.dtype)
    x = jnp.concatenate([v, t], axis=1)
    # Every token attends to every video token and to the caption's non-pad tokens.
    keys = jnp.concatenate([jnp.ones(v.shape[:2], bool), tokens != self.pad_id], axis=1)
    attend = keys[:, None, None, :]
    rngs = [None] * len(enc.blocks) if rng is None else list(jax.random.split(rng, len(enc.blocks)))
    for block, block_rng in zip(enc.blocks, rngs):
      x = block(x, block_rng, None, attend)
    x = enc.norm(x)
    nv = v.shape[1]
    return self.decode(x[:, :nv], visible, masked), self.text_head(x[:, nv:])


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
  @staticmethod
  def default_config() -> ConfigDict:
    c = videomae.VideoMAE.default_config()
    c.text_mask_ratio = 0.5  # Of the caption's words (or tokens); captions are short and say what the video shows.
    c.text_weight = 1.0
    return c

  def inputs(self):
    return Inputs(modalities=("video", "text"))

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
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
    tokenizer = tokenizers.build(self.config.data.text)
    special = (tokens == tokenizer.pad_id) | (tokens == tokenizer.bos_id) | (tokens == tokenizer.eos_id)
    if self.config.data.text.tokenizer == "bytes":
      text_masked = word_mask(text_rng, tokens, method.text_mask_ratio, tokenizer.encode(" ")[0], special)
    else:
      text_masked = ~special & (jax.random.uniform(text_rng, tokens.shape) < method.text_mask_ratio)
    pred, logits = model(video, visible, masked, tokens, text_masked, drop_rng)
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
