"""Data sources (registered in `jvssl.registry.SOURCES` and found by name), augmentation and pipelines."""
