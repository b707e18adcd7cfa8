"""pip install sdk/python: generates the drift.v1 protobuf modules into the
build with grpc_tools (Debian python3-grpc-tools) from the repository's
proto/ folder (or $DRIFT_PROTO_DIR)."""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from drift import _stubs  # noqa: E402  (imports nothing generated)


class BuildWithStubs(build_py):
    def run(self) -> None:
        super().run()
        _stubs.generate(self.build_lib, _stubs.proto_dir())


setup(cmdclass={"build_py": BuildWithStubs})
