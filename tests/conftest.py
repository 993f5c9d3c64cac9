import pytest

from helpers import start_server


@pytest.fixture(scope="module")
def hp():
    """One ``fastmock hp`` for a test module: real process, real port."""
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--seed", "7") as server:
        yield server
        server.stop()
