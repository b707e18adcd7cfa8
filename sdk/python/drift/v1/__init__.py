"""Generated drift.v1 protobuf modules (drift_pb2, drift_pb2_grpc): made by
setup.py or, in a source tree, by drift._stubs on first import."""
