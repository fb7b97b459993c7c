"""Training objectives, one file each, registered in `jvssl.registry.METHODS` and found by name.

The contract a method fulfils is `jvssl.methods.base.Method`.
"""
