"""Training objectives, registered by name in `jvssl.registry.METHODS`."""

from jvssl.methods import classify  # noqa: F401  (registers "classify")
from jvssl.methods import videomae  # noqa: F401  (registers "videomae")
