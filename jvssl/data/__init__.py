"""Data sources (registered in `jvssl.registry.SOURCES`), augmentation and pipelines."""

from jvssl.data import synthetic  # noqa: F401  (registers "synthetic")
