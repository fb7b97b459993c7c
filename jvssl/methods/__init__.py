"""Training objectives, registered by name in `jvssl.registry.METHODS`."""

from jvssl.methods import classify  # noqa: F401  (registers "classify")
from jvssl.methods import videomae  # noqa: F401  (registers "videomae")
from jvssl.methods import byol, dino, moco_v3, pretext, simclr  # noqa: F401  (register the embedding methods)
from jvssl.methods import combined  # noqa: F401  (registers "combined"; after the methods it combines)
