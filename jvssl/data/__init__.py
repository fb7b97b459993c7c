"""Data sources (registered in `jvssl.registry.SOURCES`), augmentation and pipelines."""

from jvssl.data import synthetic  # noqa: F401  (registers "synthetic")
from jvssl.data import video_folder  # noqa: F401  (registers "video_folder")
