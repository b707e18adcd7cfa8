"""The generated protobuf and gRPC modules of drift.v1.

They live in the subpackage drift.v1 (drift/v1/drift_pb2.py and
drift_pb2_grpc.py), so the generated "from drift.v1 import drift_pb2"
resolves inside this package. `pip install` generates them at build time
(setup.py); a source tree used with PYTHONPATH=sdk/python generates them on
first import with grpc_tools (Debian python3-grpc-tools) from the
repository's proto/ folder (or $DRIFT_PROTO_DIR), into drift/v1 when that
is writable, else into a temporary folder added to drift.v1's path.
Nothing generated is committed.
"""
import os
import sys
import tempfile
from types import ModuleType
from typing import Tuple

PROTO_FILE = "drift/v1/drift.proto"


def proto_dir() -> str:
    env = os.environ.get("DRIFT_PROTO_DIR")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "..", "proto"))


def generate(out_dir: str, proto: str) -> None:
    """Writes drift/v1/drift_pb2{,_grpc}.py under out_dir."""
    from grpc_tools import protoc

    src = os.path.join(proto, PROTO_FILE)
    if not os.path.exists(src):
        raise ImportError(
            "drift: the generated drift.v1 modules are missing and %s "
            "does not exist (set DRIFT_PROTO_DIR to the repository's "
            "proto/ folder, or pip install sdk/python)" % src)
    os.makedirs(os.path.join(out_dir, "drift", "v1"), exist_ok=True)
    rc = protoc.main(["grpc_tools.protoc", "-I" + proto,
                      "--python_out=" + out_dir,
                      "--grpc_python_out=" + out_dir, PROTO_FILE])
    if rc != 0:
        raise ImportError("drift: grpc_tools.protoc failed on %s" % src)


def load() -> Tuple[ModuleType, ModuleType]:
    """(drift_pb2, drift_pb2_grpc), generated first if need be."""
    import drift.v1 as pkg
    pkg_dir = os.path.dirname(os.path.abspath(pkg.__file__ or ""))
    src = os.path.join(proto_dir(), PROTO_FILE)
    gen = os.path.join(pkg_dir, "drift_pb2_grpc.py")
    # In a source tree, modules older than the .proto are made again.
    stale = (os.path.exists(src) and os.path.exists(gen) and
             os.path.getmtime(gen) < os.path.getmtime(src))
    if not stale:
        try:
            from drift.v1 import drift_pb2, drift_pb2_grpc
            return drift_pb2, drift_pb2_grpc
        except ImportError:
            pass
    root = os.path.dirname(os.path.dirname(pkg_dir))
    if os.access(pkg_dir, os.W_OK) and os.access(root, os.W_OK):
        generate(root, proto_dir())
    else:
        tmp = tempfile.mkdtemp(prefix="drift-sdk-stubs-")
        generate(tmp, proto_dir())
        pkg.__path__.append(os.path.join(tmp, "drift", "v1"))
    sys.modules.pop("drift.v1.drift_pb2", None)
    from drift.v1 import drift_pb2, drift_pb2_grpc  # noqa: F811
    return drift_pb2, drift_pb2_grpc
