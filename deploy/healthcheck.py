"""Exit 0 when a Conveyor service's gRPC health check answers SERVING, else 1.

``python /opt/conveyor/healthcheck.py 50051`` (or ``host:port``). Docker healthchecks use
it: the image has grpcio but no ``grpc_health_probe`` binary. Kubernetes needs none of
this, its probes speak gRPC health natively.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_SECONDS = 3.0


def check(target: str) -> int:
    """0 if ``target`` reports SERVING for the whole server, 1 otherwise."""
    if ":" not in target:
        target = f"127.0.0.1:{target}"
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            print(f"{target}: {exc.code().name}", file=sys.stderr)
            return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        print(f"{target}: {name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(check(sys.argv[1] if len(sys.argv) > 1 else "50051"))
