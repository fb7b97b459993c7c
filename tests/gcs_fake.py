"""A Google Cloud Storage bucket faked by a local directory, for runs whose workdir is `gs://bucket/...`.

Two clients reach a real bucket, and each is pointed at the same directory `root`
(object `gs://b/x/y` is the file `root/b/x/y`):

- tensorstore's `gcs` driver, through which orbax reads and writes array data, talks HTTP to
  the server below: the subset of the GCS JSON API that driver uses (object media and
  metadata reads with generation preconditions and byte ranges, simple media uploads,
  deletes, and listing). `TENSORSTORE_GCS_HTTP_URL` is tensorstore's own switch for this
  (its tests point it at a fake server the same way).
- etils.epath, through which orbax and jvssl handle every other file and directory, gets
  backend functions (etils' own `epath.testing.mock_epath`) that map `gs://` to `root`.
  With TensorFlow installed epath would otherwise use TensorFlow's GCS client.

orbax asks google-cloud-storage whether a bucket has a hierarchical namespace before it deletes
an old checkpoint; that call answers "no" here.

Not covered: TensorFlow's own GCS file system (tf.io.gfile, used by TensorBoard's writer and
tf.data), GCS semantics that a directory does not have (objects without directories, renames
that are copies), resumable uploads, and authentication.
"""

import contextlib
import http.server
import json
import os
import threading
import urllib.parse
from unittest import mock

from etils.epath import gpath, testing

_PREFIX = "gs://"


class _Store:
  """Objects as files under root/<bucket>/<name>; generations are counted per write, as GCS does."""

  def __init__(self, root: str):
    self.root = root
    self.lock = threading.Lock()
    self.generations: dict[str, tuple[tuple, int]] = {}  # file -> (stat signature, generation)
    self.counter = 0
    self.tmp = os.path.join(root, ".uploads")
    os.makedirs(self.tmp, exist_ok=True)

  def file(self, bucket: str, name: str) -> str:
    return os.path.join(self.root, bucket, *name.split("/"))

  def generation(self, path: str) -> int:
    """The object's generation, 0 if it does not exist; a file changed behind our back gets a new one."""
    try:
      st = os.stat(path)
    except FileNotFoundError:
      return 0
    if not os.path.isfile(path):
      return 0
    signature = (st.st_ino, st.st_size, st.st_mtime_ns)
    known = self.generations.get(path)
    if known is None or known[0] != signature:
      self.counter += 1
      known = (signature, self.counter)
      self.generations[path] = known
    return known[1]

  def write(self, path: str, data: bytes) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    self.counter += 1
    tmp = os.path.join(self.tmp, str(self.counter))
    with open(tmp, "wb") as f:
      f.write(data)
    os.replace(tmp, path)  # A reader sees the old object or the new one, never half of it.
    st = os.stat(path)
    self.generations[path] = ((st.st_ino, st.st_size, st.st_mtime_ns), self.counter)
    return self.counter

  def names(self, bucket: str) -> list[str]:
    top = os.path.join(self.root, bucket)
    out = []
    for folder, _, files in os.walk(top):
      out.extend(os.path.relpath(os.path.join(folder, f), top).replace(os.sep, "/") for f in files)
    return sorted(out)


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"  # Keep-alive and `Expect: 100-continue`, as curl uses them.
  store: _Store

  def log_message(self, *args):
    del args

  def _reply(self, code: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
    self.send_response(code)
    for k, v in (headers or {}).items():
      self.send_header(k, v)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  def _parse(self):
    url = urllib.parse.urlsplit(self.path)
    query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
    parts = url.path.split("/")
    # /storage/v1/b/<bucket>/o[/<object>] or /upload/storage/v1/b/<bucket>/o
    upload = parts[1] == "upload"
    parts = parts[2:] if upload else parts[1:]
    if len(parts) < 5 or parts[:2] != ["storage", "v1"] or parts[2] != "b" or parts[4] != "o":
      return None
    name = urllib.parse.unquote("/".join(parts[5:])) if len(parts) > 5 else None
    return upload, parts[3], name, query

  def _metadata(self, bucket, name, generation, size) -> dict:
    return {"bucket": bucket, "name": name, "generation": str(generation), "metageneration": "1", "size": str(size)}

  def _preconditions(self, generation: int, query: dict) -> int | None:
    if "ifGenerationMatch" in query and int(query["ifGenerationMatch"]) != generation:
      return 412
    if "ifGenerationNotMatch" in query and int(query["ifGenerationNotMatch"]) == generation:
      return 304
    return None

  def do_GET(self):
    parsed = self._parse()
    if parsed is None:
      return self._reply(400)
    _, bucket, name, query = parsed
    store = self.store
    if name is None:
      return self._list(bucket, query)
    path = store.file(bucket, name)
    with store.lock:
      generation = store.generation(path)
      data = None
      if generation:
        with open(path, "rb") as f:
          data = f.read()
    if not generation:
      return self._reply(404, b"{}")
    failed = self._preconditions(generation, query)
    if failed:
      return self._reply(failed, b"{}" if failed == 412 else b"")  # A 304 has no body: curl would not read it.
    if query.get("alt") != "media":
      return self._reply(200, json.dumps(self._metadata(bucket, name, generation, len(data))).encode())
    headers = {"x-goog-generation": str(generation), "x-goog-metageneration": "1"}
    wanted = self.headers.get("Range")
    if wanted and wanted.startswith("bytes="):
      first, _, last = wanted[len("bytes=") :].partition("-")
      if first:
        start, stop = int(first), min(int(last) + 1 if last else len(data), len(data))
      else:
        start, stop = max(len(data) - int(last), 0), len(data)
      if start >= len(data) and len(data) > 0:
        return self._reply(416)
      headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
      return self._reply(206, data[start:stop], headers, "application/octet-stream")
    return self._reply(200, data, headers, "application/octet-stream")

  def _list(self, bucket, query):
    start, end, prefix = query.get("startOffset", ""), query.get("endOffset"), query.get("prefix", "")
    with self.store.lock:
      names = [n for n in self.store.names(bucket) if n >= start and (end is None or n < end) and n.startswith(prefix)]
      files = [self.store.file(bucket, n) for n in names]
      items = [self._metadata(bucket, n, self.store.generation(f), os.path.getsize(f)) for n, f in zip(names, files)]
    self._reply(200, json.dumps({"kind": "storage#objects", "items": items}).encode())

  def do_POST(self):
    parsed = self._parse()
    if parsed is None or not parsed[0] or parsed[3].get("uploadType") != "media":
      return self._reply(400)
    _, bucket, _, query = parsed
    data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
    name = query["name"]
    path = self.store.file(bucket, name)
    with self.store.lock:
      if self._preconditions(self.store.generation(path), query):
        return self._reply(412, b"{}")
      generation = self.store.write(path, data)
    self._reply(200, json.dumps(self._metadata(bucket, name, generation, len(data))).encode())

  def do_DELETE(self):
    parsed = self._parse()
    if parsed is None or parsed[2] is None:
      return self._reply(400)
    _, bucket, name, query = parsed
    path = self.store.file(bucket, name)
    with self.store.lock:
      generation = self.store.generation(path)
      if not generation:
        return self._reply(404, b"{}")
      if self._preconditions(generation, query):
        return self._reply(412, b"{}")
      os.remove(path)
      self.store.generations.pop(path, None)
    self._reply(204)


def _epath_mocks(root: str) -> dict:
  """etils.epath backend functions that read and write gs:// paths under root (other paths unchanged)."""

  def local(p):
    p = os.fspath(p)
    return os.path.join(root, p[len(_PREFIX) :]) if p.startswith(_PREFIX) else p

  def url(p):
    p = os.fspath(p)
    return _PREFIX + os.path.relpath(p, root) if p.startswith(root + os.sep) else p

  def one(fn, path, *args, **kwargs):
    return fn(local(path), *args, **kwargs)

  def two(fn, path, dst, *args, **kwargs):
    return fn(local(path), local(dst), *args, **kwargs)

  def glob(fn, pattern):
    return [url(p) for p in fn(local(pattern))]

  def walk(fn, top, **kwargs):
    for folder, dirs, files in fn(local(top), **kwargs):
      yield url(folder), dirs, files

  names = ("open", "exists", "isdir", "listdir", "makedirs", "mkdir", "rmtree", "remove", "stat")
  return {n: one for n in names} | {"rename": two, "replace": two, "copy": two, "glob": glob, "walk": walk}


_server = None


def _serve() -> tuple[type, str]:
  """The process's one fake server (tensorstore reads its URL once per process); returns (handler, URL)."""
  global _server
  if _server is None:
    handler = type("Handler", (_Handler,), {"store": None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _server = handler, f"http://127.0.0.1:{server.server_address[1]}"
  return _server


@contextlib.contextmanager
def fake_gcs(root: str):
  """Serves `gs://` from the directory `root` while the context is open (see the module docstring)."""
  handler, address = _serve()
  handler.store = _Store(root)
  env = {
    "TENSORSTORE_GCS_HTTP_URL": address,
    # A fixed token: tensorstore then never looks for credentials (nor asks a metadata server).
    "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake",
  }
  try:
    with (
      mock.patch.dict(os.environ, env),
      # With TensorFlow installed epath sends gs:// to TensorFlow's GCS client, not to the backend mocked here.
      mock.patch.object(gpath, "_is_tf_installed", return_value=False),
      testing.mock_epath(**_epath_mocks(root)),
      # A bucket-metadata call (google-cloud-storage) that orbax makes before deleting on GCS.
      mock.patch("orbax.checkpoint._src.path.gcs_utils.is_hierarchical_namespace_enabled", return_value=False),
    ):
      yield
  finally:
    handler.store = None
