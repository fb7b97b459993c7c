"""tf.data pipelines that put sharded global batches on the mesh.

Order is a pure function of (seed, position): the example at global position g
of training is example `perm_epoch(v % N)` of epoch `v // N`, v = g // r, with its
random augmentation seeded by g (r = data.augment.repeats, usually 1; r > 1 puts r
differently augmented clips of one video in consecutive places). So a resumed run
continues the exact order from the step it restarts at, without saving iterator
state, and the data does not depend on the number of hosts or on tf.data's parallelism.
"""

import collections
from typing import Iterator

import jax
import numpy as np
import tensorflow as tf

from jvssl import registry, sharding
from jvssl.data import audio, augment, bad_input, service, tokenizers
from jvssl.data.video_folder import DATA_ERROR_MARK
from jvssl.errors import ConfigError, DataError

# What the training loop logs and writes to the workdir about input it could not use.
skip_counts = bad_input.skip_counts
write_bad_files = bad_input.write_bad_files

# tf.data runs on the host; a GPU build of TensorFlow must not claim accelerator memory.
tf.config.set_visible_devices([], "GPU")


def make_source(data_config, split: str):
  return registry.SOURCES.get(data_config.source)(data_config, split)


def local_batch_size(global_batch: int) -> int:
  if global_batch % jax.process_count():
    raise ConfigError(f"data.batch_size {global_batch} is not divisible by {jax.process_count()} processes")
  return global_batch // jax.process_count()


def num_train_examples(data_config, split: str | None = None) -> int:
  """Clips per epoch: the videos of the training split (after data.train_subset), each data.augment.repeats times."""
  n = make_source(data_config, split or data_config.train_split).num_examples
  n = min(n, data_config.train_subset) if data_config.train_subset else n
  return n * augment.options(data_config.augment).repeats


def _with_text(example: dict, text_config, tokenizer, seed, *, train: bool) -> dict:
  """Replaces a source's "caption" (tf.string [N], N >= 0) by "text": int32 [L] token ids of one caption, or
  [data.text.num_captions, L] when that is > 1 (MIL-NCE's candidate positives). Training draws the captions
  at random from the video's (seeded by the example's position); evaluation takes them in order. A video
  without captions gets the empty caption (start and end tokens only). tokenizer None: the caption is dropped.
  """
  captions = example.pop("caption", None)
  if captions is None or tokenizer is None:
    return example
  count = tf.shape(captions)[0]
  captions = tf.concat([captions, tf.constant([""])], 0)[: tf.maximum(count, 1)]
  n = text_config.num_captions
  if train:
    pick = tf.random.stateless_uniform([n], seed + 7, 0, tf.maximum(count, 1), tf.int32)
  else:
    pick = tf.range(n) % tf.maximum(count, 1)
  tokens = tokenizers.tf_tokenize(tokenizer, tf.gather(captions, pick), text_config.max_len)
  example["text"] = tokens[0] if n == 1 else tokens
  return example


def _with_spectrogram(example: dict, audio_config) -> dict:
  """A source's waveform "audio" [..., samples] -> its log-mel spectrogram [..., frames, mel bins], on the host."""
  if "audio" in example:
    example["audio"] = audio.log_mel(example["audio"], audio_config)
  return example


def _example_seed(seed: int, position) -> tf.Tensor:
  return tf.stack([tf.constant(seed, tf.int64) * 1000003 + 17, position])


def _epoch_permutation(index, epoch, seed: int, num_examples: int):
  # Hash (seed, epoch) first: index_shuffle is weak for some small raw seeds.
  key = tf.random.stateless_uniform(
    [2], tf.stack([tf.constant(seed, tf.int64), epoch]), minval=None, maxval=None, dtype=tf.int64
  )
  return tf.random.experimental.index_shuffle(index, key, tf.constant(num_examples - 1, tf.int64))


def train_dataset(config, *, start_step: int = 0, split: str | None = None, inputs=None) -> tf.data.Dataset:
  """This process's batches for steps start_step, start_step + 1, ...: dicts of numpy arrays.

  video: uint8 [b, T, H, W, 3] (or [b, K, T, H, W, 3] with K = data.clips_per_video clips per video);
  label: int32 [b]. `inputs` (a method's `jvssl.methods.base.Inputs`) keeps only the modalities the
  method reads, and one clip per video unless it takes all of them; None keeps everything.
  """
  data = config.data
  if inputs is not None and not inputs.all_clips and data.clips_per_video > 1:
    data = data.copy_and_resolve_references()
    data.clips_per_video = 1  # The method reads one clip: decode no others.
  source = make_source(data, split or data.train_split)
  # Repeated augmentation: video v fills positions v * repeats ... v * repeats + repeats - 1, one clip per
  # position, all cut from the same frames (VideoMAE's --num_sample); 1 leaves the order as it was.
  repeats = augment.options(data.augment).repeats
  num_examples = num_train_examples(data, split) // repeats
  if num_examples <= 0:
    raise ConfigError(f"data source '{data.source}' split '{split or data.train_split}' is empty")
  global_batch = data.batch_size
  local_batch = local_batch_size(global_batch)
  if local_batch % repeats:
    raise ConfigError(f"data.augment.repeats {repeats} does not divide the per-process batch {local_batch}")
  process = jax.process_index()
  wants_text = inputs is None or "text" in inputs.modalities
  tokenizer = tokenizers.build(data.text) if wants_text else None

  def position(k):
    # k counts this process's examples; g is the position in the global order.
    step, slot = k // local_batch, k % local_batch
    return step * global_batch + process * local_batch + slot

  def load(k):
    # k counts this process's videos; g is the global position of the first of video v's `repeats` clips.
    g = position(k * repeats)
    v = g // repeats
    epoch, i = v // num_examples, v % num_examples
    index = _epoch_permutation(i, epoch, config.seed, num_examples) if data.shuffle else i
    example = source.load(index, _example_seed(config.seed, v))
    example = _with_text(example, data.text, tokenizer, _example_seed(config.seed, v), train=True)
    if inputs is None or "audio" in inputs.modalities:
      example = _with_spectrogram(example, data.audio)
    else:
      example.pop("audio", None)
    video = example["video"]
    clips = [augment.train_augment(video, _example_seed(config.seed, g + j) + 1, data) for j in range(repeats)]
    example["video"] = tf.stack(clips) if repeats > 1 else clips[0]
    if inputs is not None:
      missing = [m for m in inputs.modalities if m not in example]
      if missing:
        raise ConfigError(f"data source '{data.source}' gives {sorted(example)}, not {missing}")
      example = {m: example[m] for m in inputs.modalities} | {"bad": example.get("bad", tf.constant(0, tf.int32))}
    example.setdefault("bad", tf.constant(0, tf.int32))
    if repeats > 1:
      example = {key: x if key == "video" else tf.stack([x] * repeats) for key, x in example.items()}
    return example

  def batches(videos: tf.data.Dataset) -> tf.data.Dataset:
    ds = videos.map(load, num_parallel_calls=_parallel(data), deterministic=True)
    if repeats > 1:
      ds = ds.unbatch()
    ds = ds.batch(local_batch, drop_remainder=True)
    return ds.map(lambda batch: _check_bad_fraction(batch, data.max_bad_fraction))

  videos_per_batch = local_batch // repeats
  if data.service.address:
    # One batch per step of a splittable range, so the service's workers can share the steps out.
    def batch_of_step(step):
      ds = batches(tf.data.Dataset.range(step * videos_per_batch, (step + 1) * videos_per_batch))
      return ds.map(lambda batch: service.with_step(batch, step, start_step, data.service))

    ds = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
    ds = ds.interleave(batch_of_step, cycle_length=2, num_parallel_calls=2, deterministic=False)
    return service.distribute(ds.prefetch(data.prefetch_batches), data.service)
  ds = batches(tf.data.Dataset.range(start_step * videos_per_batch, np.iinfo(np.int64).max))
  return ds.prefetch(data.prefetch_batches)


def _check_bad_fraction(batch: dict, max_fraction: float) -> dict:
  """Drops the per-example "bad" flags, failing when more than max_fraction of the batch was stood in for."""
  batch = dict(batch)
  fraction = tf.reduce_mean(tf.cast(batch.pop("bad"), tf.float32))
  check = tf.debugging.assert_less_equal(
    fraction,
    tf.constant(max_fraction, tf.float32),
    message=f"{DATA_ERROR_MARK} more than data.max_bad_fraction={max_fraction} of a batch was unreadable video "
    "(skip counts are in the log); fix the data or raise data.max_bad_fraction",
  )
  with tf.control_dependencies([check]):
    batch["video"] = tf.identity(batch["video"])
  return batch


def eval_dataset(
  config, split: str, batch_size: int, limit: int = 0, *, captions: bool = False
) -> tuple[tf.data.Dataset, int]:
  """Every example of `split` (the first `limit` if > 0) once, in order, padded to whole global batches.

  Returns (dataset of this process's batches, number of real examples). Batches
  carry "mask" (1 real, 0 padding) so metrics ignore padding. captions: batches also carry
  "caption", every caption of each video as bytes [b, C] (C the most of any video in the batch,
  shorter lists padded with b""), when the source has captions: strings, to be taken out before `to_global`.
  """
  data = config.data
  source = make_source(data, split)
  num_examples = min(source.num_examples, limit) if limit else source.num_examples
  local_batch = local_batch_size(batch_size)
  num_batches = -(-num_examples // batch_size)
  process = jax.process_index()
  tokenizer = tokenizers.build(data.text)

  def load(k):
    step, slot = k // local_batch, k % local_batch
    g = step * batch_size + process * local_batch + slot
    example = source.load(tf.minimum(g, num_examples - 1), _example_seed(config.seed + 1, g))
    every_caption = example.get("caption") if captions else None
    example = _with_text(example, data.text, tokenizer, _example_seed(config.seed + 1, g), train=False)
    if every_caption is not None:
      example["caption"] = every_caption
    example = _with_spectrogram(example, data.audio)
    example["video"] = augment.eval_transform(example["video"], data)
    # A stood-in video must not count as the listed one.
    example["mask"] = tf.cast(g < num_examples, tf.int32) * (1 - example.pop("bad", 0))
    return example

  ds = tf.data.Dataset.range(num_batches * local_batch)
  ds = ds.map(load, num_parallel_calls=_parallel(data), deterministic=True)
  # Videos have different numbers of captions; padded_batch pads strings with b"".
  ds = ds.padded_batch(local_batch, drop_remainder=True) if captions else ds.batch(local_batch, drop_remainder=True)
  return ds.prefetch(data.prefetch_batches), num_examples


def _parallel(data):
  return tf.data.AUTOTUNE if data.num_parallel_calls < 0 else data.num_parallel_calls


def to_global(local_batch: dict, mesh: jax.sharding.Mesh, rules) -> dict:
  """Assembles per-process numpy batches into global jax.Arrays sharded over the batch axis."""
  return {
    k: jax.make_array_from_process_local_data(sharding.batch_sharding(mesh, rules, np.ndim(v)), v)
    for k, v in local_batch.items()
  }


def device_iterator(ds: tf.data.Dataset, mesh, rules, prefetch: int = 2) -> Iterator[dict]:
  """Iterates global device batches with `prefetch` batches already on their way to the devices."""
  queue: collections.deque = collections.deque()
  for local in numpy_batches(ds):
    queue.append(to_global(local, mesh, rules))  # Transfers are asynchronous.
    if len(queue) > prefetch:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def numpy_batches(ds: tf.data.Dataset) -> Iterator[dict]:
  """ds.as_numpy_iterator(), with jvssl's data errors raised inside tf.data turned back into DataError, and the
  batches of the tf.data service put back in step order."""
  try:
    batches = ds.as_numpy_iterator()
    if service.STEP_KEY in ds.element_spec:
      batches = service.in_order(batches)
    yield from batches
  except tf.errors.OpError as e:
    if DATA_ERROR_MARK not in e.message:
      raise
    raise DataError(e.message.split(DATA_ERROR_MARK, 1)[1].strip().splitlines()[0]) from None
