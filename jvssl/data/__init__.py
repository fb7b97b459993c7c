"""Data sources (registered in `jvssl.registry.SOURCES`), augmentation and pipelines."""

from jvssl.data import synthetic  # noqa: F401  (registers "synthetic")
from jvssl.data import video_folder  # noqa: F401  (registers "video_folder")
from jvssl.data import tfrecord  # noqa: F401  (registers "tfrecord")
from jvssl.data import tfds_source  # noqa: F401  (registers "tfds")
