import os
import subprocess
import sys

import pytest

from jvssl import cpu_memory

linux_glibc = pytest.mark.skipif(
  not cpu_memory.wanted({"JAX_PLATFORMS": "cpu"}), reason="glibc malloc tuning applies to Linux with glibc only"
)


@linux_glibc
def test_wanted_on_cpu_unless_opted_out_or_already_tuned():
  assert cpu_memory.wanted({"JAX_PLATFORMS": "cpu"})
  assert not cpu_memory.wanted({"JAX_PLATFORMS": "cuda"})
  assert not cpu_memory.wanted({"JAX_PLATFORMS": "tpu,cpu"})
  assert not cpu_memory.wanted({"JAX_PLATFORMS": "cpu", "JVSSL_MALLOC_TUNING": "0"})
  assert not cpu_memory.wanted({"JAX_PLATFORMS": "cpu", "GLIBC_TUNABLES": "glibc.malloc.arena_max=4"})
  # Tunables of other glibc parts do not count as malloc tuning.
  assert cpu_memory.wanted({"JAX_PLATFORMS": "cpu", "GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=512"})


def test_tuned_environ_keeps_existing_tunables_and_the_rest():
  env = cpu_memory.tuned_environ({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=512", "HOME": "/h"})
  assert env["GLIBC_TUNABLES"] == "glibc.rtld.optional_static_tls=512:" + cpu_memory.TUNABLES
  assert env["HOME"] == "/h"
  assert cpu_memory.tuned_environ({})["GLIBC_TUNABLES"] == cpu_memory.TUNABLES


_CHILD = (
  "import os, sys; from jvssl import cpu_memory; cpu_memory.reexec_with_tuned_malloc(); "
  "print(os.environ.get('GLIBC_TUNABLES', ''), sys.argv[1:])"
)


def _run_child(**env):
  environ = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JVSSL_MALLOC_TUNING")}
  out = subprocess.run(
    [sys.executable, "-c", _CHILD, "a", "--b=1"], env={**environ, **env}, capture_output=True, text=True, check=True
  )
  return out.stdout.strip()


@linux_glibc
def test_reexec_restarts_once_with_the_tunables_and_the_same_arguments():
  assert _run_child(JAX_PLATFORMS="cpu") == f"{cpu_memory.TUNABLES} ['a', '--b=1']"
  assert _run_child(JAX_PLATFORMS="cpu", JVSSL_MALLOC_TUNING="0") == "['a', '--b=1']"
