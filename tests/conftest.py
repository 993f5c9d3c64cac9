import os

import pytest

from helpers import start_server

# Every `fastmock hp` a test starts would otherwise take the default gRPC port 50051; gRPC tests name a port.
os.environ["FASTMOCK_HP_GRPC_PORT"] = "0"


@pytest.fixture(scope="module")
def hp():
    """One ``fastmock hp`` for a test module: real process, real port."""
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--seed", "7") as server:
        yield server
        server.stop()
