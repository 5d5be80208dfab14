import socket

import pytest

from tests.unit.conftest import NetworkInUnitTest


def test_a_unit_test_that_opens_a_socket_fails() -> None:
    with pytest.raises(NetworkInUnitTest):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)
