"""Text tokenisation for the multimodal methods: captions to int32 ids, chosen by the `data.text` config section.

Tokenizers (`data.text.tokenizer`):

* "bytes" (default): the UTF-8 bytes of the text, each shifted past the three specials pad=0, bos=1, eos=2,
  so vocab_size is 259. Needs no file, and runs in pure TF ops inside tf.data.
* "sentencepiece": a SentencePiece model file (`.model`), the vocabularies of T5, SigLIP and PaLI in big_vision
  and of most JAX text codebases. pad/bos/eos are the model's; a model without a pad piece pads with its unk
  (id 0 in SentencePiece's default layout, and a piece that carries no text), and one without bos (T5's) starts
  with pad, as T5's decoder does.
* "clip_bpe": CLIP's byte-level BPE, from a HF checkpoint's vocab.json with merges.txt beside it (`vocab_path` is
  the directory or the vocab.json) or from OpenAI's bpe_simple_vocab_16e6.txt.gz. It cleans text as OpenAI's
  and open_clip's tokenizers do (HTML entities unescaped twice, NFC, whitespace runs to one space, lowercase),
  except for ftfy's repair of mis-decoded text, which is not a dependency here. HF's CLIPTokenizer gives the same
  ids except that it skips the unescaping and ftfy and lowercases one character at a time (a final Σ).

Every sequence is bos + text ids + eos, truncated to `max_len` keeping eos last and padded with pad_id after it.
CLIP pads with 0, as OpenAI's `clip.tokenize` and open_clip do (HF's CLIPTokenizer pads its OpenAI checkpoints
with <|endoftext|> instead); 0 is also CLIP's "!", so a model finds where a text ends from its first eos (where
CLIP pools), never from `ids != pad_id`.

Vocabulary files are read with tf.io.gfile (local or gs://); nothing is downloaded.
"""

import gzip
import html
import json
import os
import unicodedata

import numpy as np
import sentencepiece
import tensorflow as tf
import tokenizers
from ml_collections import ConfigDict
from tokenizers import decoders, normalizers, pre_tokenizers

from jvssl.errors import ConfigError

NAMES = ("bytes", "sentencepiece", "clip_bpe")

# CLIP's specials and its pre-tokenizer pattern (OpenAI's simple_tokenizer.py, as HF's CLIPTokenizer writes it).
CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
CLIP_PAD_ID = 0
# OpenAI's tokenizer reads only this many merges of its .txt.gz (the rest of its 49408 ids are bytes and specials).
CLIP_NUM_MERGES = 49152 - 256 - 2


def default_config() -> ConfigDict:
  """The `data.text` section."""
  return ConfigDict(
    {
      "tokenizer": "bytes",  # One of NAMES.
      # sentencepiece: the .model file; clip_bpe: a directory or its vocab.json (merges.txt beside it), or the .txt.gz.
      "vocab_path": "",
      "max_len": 32,  # Tokens per text, bos and eos included.
      "lowercase": True,  # CLIP's vocabulary is lowercase; big_vision's `tokenize` op lowercases by default too.
    }
  )


class Tokenizer:
  """Text to ids and back. Subclasses set the four ids and define `encode` and `_decode`."""

  vocab_size: int
  pad_id: int
  bos_id: int
  eos_id: int

  def encode(self, text: str) -> list[int]:
    """The ids of `text`, without bos and eos."""
    raise NotImplementedError

  def decode(self, ids) -> str:
    """The text of `ids` (encode's output or a row of encode_padded): what comes before the first eos, less bos."""
    ids = [int(i) for i in ids]
    if self.eos_id in ids:
      ids = ids[: ids.index(self.eos_id)]
    return self._decode([i for i in ids if i != self.bos_id])

  def _decode(self, ids: list[int]) -> str:
    raise NotImplementedError


class BytesTokenizer(Tokenizer):
  OFFSET = 3  # pad, bos, eos.

  def __init__(self, lowercase: bool):
    self.lowercase = lowercase
    self.vocab_size = 256 + self.OFFSET
    self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

  def encode(self, text: str) -> list[int]:
    text = text.lower() if self.lowercase else text
    return [b + self.OFFSET for b in text.encode("utf-8")]

  def _decode(self, ids: list[int]) -> str:
    # Truncation can cut a character's bytes: replace rather than fail.
    return bytes(i - self.OFFSET for i in ids if i >= self.OFFSET).decode("utf-8", errors="replace")

  def tf_encode(self, texts: tf.Tensor) -> tf.RaggedTensor:
    """encode in TF ops: tf.string [N] -> int32 [N, (bytes)]."""
    # Invalid UTF-8 becomes U+FFFD, as encode_padded's decoding of bytes input does.
    texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    if self.lowercase:
      texts = tf.strings.lower(texts, encoding="utf-8")  # Full Unicode lowercasing, as str.lower.
    chars = tf.strings.bytes_split(texts)
    values = tf.reshape(tf.io.decode_raw(chars.flat_values, tf.uint8), [-1])
    return chars.with_flat_values(tf.cast(values, tf.int32) + self.OFFSET)


class SentencePieceTokenizer(Tokenizer):
  def __init__(self, model_proto: bytes, lowercase: bool):
    self.lowercase = lowercase
    self._sp = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
    self.vocab_size = self._sp.get_piece_size()
    self.eos_id = self._sp.eos_id()
    self.pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else self._sp.unk_id()
    self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else self.pad_id

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text.lower() if self.lowercase else text)

  def _decode(self, ids: list[int]) -> str:
    return self._sp.decode(ids)


class ClipBpeTokenizer(Tokenizer):
  def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], lowercase: bool):
    bpe = tokenizers.models.BPE(
      vocab, merges, continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token=CLIP_EOS, fuse_unk=False
    )
    self._tok = tokenizers.Tokenizer(bpe)
    self.lowercase = lowercase
    self._tok.normalizer = normalizers.Replace(tokenizers.Regex(r"\s+"), " ")
    self._tok.pre_tokenizer = pre_tokenizers.Sequence(
      [
        pre_tokenizers.Split(tokenizers.Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
      ]
    )
    self._tok.decoder = decoders.ByteLevel()
    # Specials written in the text become the special ids, as in OpenAI's and HF's tokenizers.
    self._tok.add_special_tokens([CLIP_BOS, CLIP_EOS])
    self.vocab_size = self._tok.get_vocab_size()
    self.pad_id, self.bos_id, self.eos_id = CLIP_PAD_ID, vocab[CLIP_BOS], vocab[CLIP_EOS]

  def encode(self, text: str) -> list[int]:
    # Cleaned in Python as OpenAI's tokenizer does: the tokenizers library lowercases one character at a time
    # (a final Σ becomes σ, not ς).
    text = unicodedata.normalize("NFC", html.unescape(html.unescape(text)))
    return self._tok.encode(text.lower() if self.lowercase else text, add_special_tokens=False).ids

  def _decode(self, ids: list[int]) -> str:
    return self._tok.decode(ids, skip_special_tokens=False).replace("</w>", " ").strip()


def _bytes_to_unicode() -> list[str]:
  """GPT-2's printable stand-ins for the 256 bytes, in the order CLIP's vocabulary lists them."""
  printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  rest = [b for b in range(256) if b not in printable]
  return [chr(c) for c in printable] + [chr(256 + n) for n in range(len(rest))]


def _read(path: str) -> bytes:
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read()


def _parse_merges(lines: list[str]) -> list[tuple[str, str]]:
  return [tuple(line.split()) for line in lines if line]


def _clip_files(path: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
  """CLIP's vocabulary and merges from vocab.json + merges.txt, or rebuilt from OpenAI's .txt.gz as it does."""
  if path.endswith(".gz"):
    # Its first line is a version header.
    merges = _parse_merges(gzip.decompress(_read(path)).decode("utf-8").split("\n")[1:])[:CLIP_NUM_MERGES]
    byte_units = _bytes_to_unicode()
    words = [*byte_units, *(u + "</w>" for u in byte_units), *("".join(m) for m in merges), CLIP_BOS, CLIP_EOS]
    return {w: i for i, w in enumerate(words)}, merges
  vocab_file = os.path.join(path, "vocab.json") if tf.io.gfile.isdir(path) else path
  merges_file = os.path.join(os.path.dirname(vocab_file), "merges.txt")
  for file in (vocab_file, merges_file):
    if not tf.io.gfile.exists(file):
      raise ConfigError(f"data.text.vocab_path: CLIP's BPE needs vocab.json and merges.txt; {file} is missing")
  vocab = json.loads(_read(vocab_file).decode("utf-8"))
  lines = _read(merges_file).decode("utf-8").split("\n")
  return vocab, _parse_merges([line for line in lines if not line.startswith("#version")])


def _load(name: str, path: str, lowercase: bool) -> Tokenizer:
  if name == "sentencepiece":
    tokenizer = SentencePieceTokenizer(_read(path), lowercase)
    if tokenizer.eos_id < 0:
      raise ConfigError(f"SentencePiece model {path} has no eos piece; jvssl ends every text with eos")
    return tokenizer
  vocab, merges = _clip_files(path)
  for special in (CLIP_BOS, CLIP_EOS):
    if special not in vocab:
      raise ConfigError(f"CLIP vocabulary {path} has no {special}; is it CLIP's?")
  return ClipBpeTokenizer(vocab, merges, lowercase)


def build(text_config) -> Tokenizer:
  """The tokenizer that the `data.text` section names; ConfigError if it is unknown or its file cannot be read."""
  name, path = text_config.tokenizer, text_config.vocab_path
  if name not in NAMES:
    raise ConfigError(f"data.text.tokenizer must be one of {NAMES}, not {name!r}")
  if name == "bytes":
    return BytesTokenizer(text_config.lowercase)
  if not path:
    raise ConfigError(f"data.text.tokenizer={name!r} needs data.text.vocab_path, its vocabulary file")
  if not tf.io.gfile.exists(path):
    raise ConfigError(f"data.text.vocab_path {path} does not exist (tokenizer {name!r}); nothing is downloaded")
  try:
    return _load(name, path, text_config.lowercase)
  except ConfigError:
    raise
  except Exception as e:  # Each library has its own errors for a bad file; the user needs one line either way.
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise ConfigError(f"data.text.vocab_path {path} is not a readable {name!r} vocabulary: {reason}") from e


def _check_max_len(max_len: int):
  if max_len < 2:
    raise ConfigError(f"data.text.max_len must be at least 2 (bos and eos), not {max_len}")


def encode_padded(tokenizer: Tokenizer, texts, max_len: int) -> np.ndarray:
  """bos + ids + eos of each text, truncated keeping eos last, padded with pad_id.

  texts: a str or bytes (UTF-8), or a nested list / array of them, of shape S. Returns int32 [*S, max_len].
  """
  _check_max_len(max_len)
  texts = np.asarray(texts, dtype=object)
  out = np.full((*texts.shape, max_len), tokenizer.pad_id, np.int32)
  for index, text in np.ndenumerate(texts):
    if isinstance(text, bytes):
      text = text.decode("utf-8", errors="replace")
    ids = [tokenizer.bos_id, *tokenizer.encode(text)[: max_len - 2], tokenizer.eos_id]
    out[index][: len(ids)] = ids
  return out


def tf_tokenize(tokenizer: Tokenizer, texts: tf.Tensor, max_len: int) -> tf.Tensor:
  """encode_padded inside a TF graph (a tf.data map): tf.string [*S] -> int32 [*S, max_len], static shape set.

  "bytes" runs in TF ops; the others call their library through tf.numpy_function.
  """
  _check_max_len(max_len)
  texts = tf.convert_to_tensor(texts, tf.string)
  out_shape = texts.shape.concatenate([max_len])
  if isinstance(tokenizer, BytesTokenizer):
    ids = tokenizer.tf_encode(tf.reshape(texts, [-1]))[:, : max_len - 2]
    end = lambda i: tf.RaggedTensor.from_tensor(tf.fill([ids.nrows(), 1], i))
    ids = tf.concat([end(tokenizer.bos_id), ids, end(tokenizer.eos_id)], axis=1)
    ids = ids.to_tensor(default_value=tokenizer.pad_id, shape=[None, max_len])
    ids = tf.reshape(ids, tf.concat([tf.shape(texts), [max_len]], axis=0))
  else:
    ids = tf.numpy_function(lambda t: encode_padded(tokenizer, t, max_len), [texts], tf.int32, stateful=False)
  ids.set_shape(out_shape)
  return ids
