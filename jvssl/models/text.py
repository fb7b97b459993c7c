"""Text transformer (CLIP's text tower): token ids [B, L] -> per-token features and one pooled embedding.

Token embedding plus a learned position table, pre-norm blocks (`layers.Block`) under a key-padding
mask and, when causal, a causal mask; a final LayerNorm on every token (CLIP's final_layer_norm);
the pooled embedding read at the end-of-text token, averaged over the text, or from the first token,
then optionally projected without bias (CLIP's text_projection). `convert.clip_text` imports
transformers' CLIP text weights into it.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jvssl import sharding
from jvssl.models import layers

POOLINGS = ("eot", "argmax", "mean", "cls")


def default_config() -> ConfigDict:
  return ConfigDict(
    {
      "width": 256,
      "depth": 4,
      "num_heads": 4,
      "mlp_ratio": 4.0,
      "causal": True,  # Each token sees only itself and earlier tokens (CLIP, GPT).
      # "eot": the last non-pad token, the end-of-text token of right-padded ids; "argmax": the first
      # occurrence of the highest id, and the text is what comes up to it (CLIP's convention: its
      # end-of-text token is the last id of the vocabulary, and its tokenizers pad with that id or with 0,
      # which is also its "!"); "mean": the mean over non-pad tokens; "cls": the first token (a BOS / CLS
      # token, which needs causal=False to see the text).
      "pooling": "eot",
      "max_len": 32,  # Rows of the position table: the longest token sequence.
      "activation": "gelu",  # "quick_gelu" for OpenAI CLIP weights.
      "qkv_bias": "all",
      "norm_eps": 1e-5,  # torch.nn.LayerNorm's, as CLIP's.
      "drop_path_rate": 0.0,
      "attention_impl": "auto",
      "projection_dim": 0,  # > 0: pooled is projected to this width without bias; 0: no projection.
    }
  )


class TextTransformer(nnx.Module):
  """tokens int [B, L] (L <= max_len) -> {"tokens": [B, L, width], "pooled": [B, out], "mask": bool [B, L]}.

  "mask" is True on text tokens: those other than pad_id, or with pooling 'argmax' those up to the end-of-text
  token; `width` is the pooled width (projection_dim when > 0). Tokens outside the text are attended by no
  token; they still get outputs, which "mask" tells to ignore.
  """

  default_config = staticmethod(default_config)

  def __init__(
    self,
    config,
    *,
    vocab_size: int,
    pad_id: int = 0,
    rngs: nnx.Rngs,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
  ):
    if config.pooling not in POOLINGS:
      raise ValueError(f"text pooling must be one of {', '.join(POOLINGS)}, not {config.pooling!r}")
    if config.pooling == "cls" and config.causal:
      raise ValueError("text pooling 'cls' reads the first token, which a causal model lets see only itself")
    width, mlp = config.width, int(round(config.width * config.mlp_ratio))
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    normal = nnx.initializers.normal(0.02)
    self.token_embed = layers.param(rngs, normal, (vocab_size, width), ("vocab", "embed"), param_dtype)
    self.pos_embed = layers.param(rngs, normal, (config.max_len, width), (None, "embed"), param_dtype)
    self.blocks = nnx.List(
      [
        layers.Block(
          width,
          config.num_heads,
          mlp,
          qkv_bias=config.qkv_bias,
          norm_eps=config.norm_eps,
          drop_path_rate=float(rate),
          attention_impl=config.attention_impl,
          activation=config.activation,
          **kw,
        )
        for rate in np.linspace(0.0, config.drop_path_rate, config.depth)
      ]
    )
    self.norm = layers.LayerNorm(width, eps=config.norm_eps, **kw)
    self.proj = (
      layers.Dense(width, config.projection_dim, axes=("embed", None), use_bias=False, **kw)
      if config.projection_dim
      else None
    )
    self.width = config.projection_dim or width
    self.max_len = config.max_len
    self.pad_id = pad_id
    self.causal = config.causal
    self.pooling = config.pooling
    self.dtype = dtype

  def _text_mask(self, tokens):
    """(mask bool [B, L] of text tokens, end-of-text position int [B])."""
    positions = jnp.arange(tokens.shape[1])
    if self.pooling == "argmax":
      # The padding id may be text ("!" in CLIP's vocabulary) or the end-of-text id itself: only the
      # first end-of-text token tells where the text ends.
      eot = jnp.argmax(tokens, axis=1)
      return positions <= eot[:, None], eot
    mask = tokens != self.pad_id
    return mask, jnp.max(jnp.where(mask, positions, 0), axis=1)

  def __call__(self, tokens, *, rng=None, train: bool | None = None):
    if train is False:
      rng = None  # Evaluation: no stochastic depth.
    b, length = tokens.shape
    if length > self.max_len:
      raise ValueError(f"{length} tokens are more than the text model's max_len {self.max_len}")
    mask, eot = self._text_mask(tokens)
    attend = mask[:, None, None, :]  # [B, 1, 1, L]: no query attends to a pad key.
    if self.causal:
      attend = attend & jnp.tril(jnp.ones((length, length), bool))[None, None]
    x = jnp.take(self.token_embed[...], tokens, axis=0) + self.pos_embed[:length]
    x = sharding.constrain(x.astype(self.dtype), ("batch", "act_seq", "act_embed"))
    rngs = [None] * len(self.blocks) if rng is None else list(jax.random.split(rng, len(self.blocks)))
    for block, block_rng in zip(self.blocks, rngs):
      x = block(x, block_rng, mask=attend)
    x = self.norm(x)
    if self.pooling == "mean":
      weights = mask.astype(x.dtype)[..., None]
      pooled = (x * weights).sum(1) / jnp.maximum(weights.sum(1), 1)
    elif self.pooling == "cls":
      pooled = x[:, 0]
    else:
      pooled = x[jnp.arange(b), eot]
    if self.proj is not None:
      pooled = self.proj(pooled)
    return {"tokens": x, "pooled": pooled, "mask": mask}
