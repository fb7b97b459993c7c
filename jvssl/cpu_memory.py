"""glibc malloc settings that keep XLA:CPU's per-step buffers in memory between steps.

Each execution of a compiled step allocates its temporaries as one block (about
1 GB for the VideoMAE ViT-S step at batch 2) from a runtime thread. glibc serves
a block that large from a thread's arena with a fresh `mmap` and returns it with
`munmap`, so every step page-faults the whole block back in: about 250,000 minor
faults and 0.5 CPU-seconds of kernel time per step on a 2-core machine, a quarter
of the step. With one arena, no mmap and no trimming, the block is carved from
the heap once and reused.

glibc reads these settings only at process start, so the command-line entry
points re-execute themselves once with them (`reexec_with_tuned_malloc`). It
applies when JAX will run on the CPU (accelerators allocate device memory
elsewhere, and a single arena could slow a host's many tf.data threads), and is
left out when GLIBC_TUNABLES already sets malloc or JVSSL_MALLOC_TUNING=0.
"""

import importlib.metadata
import importlib.util
import os
import platform
import sys

TUNABLES = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
# Importable modules of JAX's accelerator plugins (the CUDA and ROCm plugins register under `jax_plugins`).
_ACCELERATOR_MODULES = ("libtpu",)


def _accelerator_installed() -> bool:
  if any(importlib.util.find_spec(name) is not None for name in _ACCELERATOR_MODULES):
    return True
  if importlib.util.find_spec("jax_plugins") is not None:
    import pkgutil

    import jax_plugins

    if any(True for _ in pkgutil.iter_modules(jax_plugins.__path__)):
      return True
  return any(True for _ in importlib.metadata.entry_points(group="jax_plugins"))


def runs_on_cpu(environ=os.environ) -> bool:
  """Whether JAX will pick the CPU: JAX_PLATFORMS says so, or no accelerator plugin is installed."""
  platforms = environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  return not _accelerator_installed()


def wanted(environ=os.environ) -> bool:
  """Whether this process should restart with TUNABLES."""
  return (
    sys.platform.startswith("linux")
    and platform.libc_ver()[0] == "glibc"
    and environ.get("JVSSL_MALLOC_TUNING", "1") != "0"
    and "glibc.malloc." not in environ.get("GLIBC_TUNABLES", "")
    and runs_on_cpu(environ)
  )


def tuned_environ(environ=os.environ) -> dict:
  """`environ` with TUNABLES added to any GLIBC_TUNABLES it already has."""
  existing = environ.get("GLIBC_TUNABLES", "")
  return dict(environ, GLIBC_TUNABLES=f"{existing}:{TUNABLES}" if existing else TUNABLES)


def reexec_with_tuned_malloc() -> None:
  """Replaces this process by the same command with TUNABLES set, when `wanted`; returns otherwise.

  Call it first thing under `if __name__ == "__main__":`, never from library code.
  """
  if not wanted():
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], tuned_environ())
