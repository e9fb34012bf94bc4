"""Node addresses: ``host[:port]`` with the port in ASCII digits only (``int()`` also reads "٣")."""

import pytest

from llmgate.schemas.upstream import split_host_port


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("api.openai.com:443", ("api.openai.com", 443)),
        ("h", ("h", None)),
        ("h:080", ("h", 80)),
        ("h:65535", ("h", 65535)),
        ("[::1]:80", ("[::1]", 80)),
        ("[::1]", ("[::1]", None)),
        ("::1", ("::1", None)),  # bare IPv6: no port, as APISIX's parse_addr
    ],
)
def test_split(address: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1:٣",  # Arabic-Indic three: int() reads 3
        "h:²",  # str.isdigit() says yes, int() says no
        "h:",
        "h:+1",
        "h: 1",
        "h:1 ",
        "h:0",
        "h:65536",
        "h:000080",
        "h:0x50",
        "[::1]:٣",
        "[::1]:",
        "[::1]x",
        "[::1]:80x",
    ],
)
def test_a_bad_port_is_refused_not_read_as_a_host(address: str) -> None:
    with pytest.raises(ValueError, match="invalid port"):
        split_host_port(address)
