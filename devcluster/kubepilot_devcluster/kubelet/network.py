"""Loopback address pools: pod IPs from 127.1.0.0/16, Service cluster IPs from 127.2.0.0/16.

On Linux the whole 127.0.0.0/8 block reaches the loopback interface, so every pod can listen on its own
address (two pods may both serve port 8188) and the Service proxy can listen on each cluster IP.
There is no cluster DNS: components reach a Service through ``spec.clusterIP`` or its Endpoints.
"""

from __future__ import annotations

import ipaddress
import random

POD_NETWORK = ipaddress.IPv4Network("127.1.0.0/16")
SERVICE_NETWORK = ipaddress.IPv4Network("127.2.0.0/16")


class AddressPoolExhausted(RuntimeError):
    """Every address of the pool is in use."""


class AddressPool:
    """Hands out addresses of a network round-robin, never one in use, skipping .0 and .255 hosts."""

    def __init__(
        self, network: ipaddress.IPv4Network, first_offset: int = 2, start_offset: int | None = None
    ) -> None:
        self.network = network
        self._first = first_offset
        # A random starting point keeps two devclusters on one machine from handing out the same addresses.
        size = network.num_addresses
        self._next = start_offset if start_offset is not None else random.randrange(first_offset, size - 1)
        self._used: set[str] = set()

    def __contains__(self, address: str) -> bool:
        try:
            return ipaddress.IPv4Address(address) in self.network
        except ValueError:
            return False

    def reserve(self, address: str) -> None:
        """Mark an address (found on an existing object) as taken."""
        if address in self:
            self._used.add(address)

    def release(self, address: str) -> None:
        self._used.discard(address)

    def allocate(self) -> str:
        size = self.network.num_addresses
        for _ in range(size):
            offset = self._next
            self._next = self._next + 1 if self._next + 1 < size - 1 else self._first
            address = str(self.network.network_address + offset)
            if offset % 256 in (0, 255) or address in self._used:
                continue
            self._used.add(address)
            return address
        raise AddressPoolExhausted(f"no free address left in {self.network}")
