"""Allocated serving ports: a block of three from the pipeline's name, stable and in range."""

from __future__ import annotations

from ct_assets.lib.core.ports import BLOCKS, FIRST_PORT, PORT_KEYS, allocated_ports


def test_a_pipeline_gets_three_consecutive_ports_in_the_allocated_range() -> None:
    ports = allocated_ports("rain_ibk")
    assert list(ports) == list(PORT_KEYS)
    values = list(ports.values())
    assert values == list(range(values[0], values[0] + 3))
    assert values[0] >= FIRST_PORT and values[-1] < FIRST_PORT + 3 * BLOCKS
    assert (values[0] - FIRST_PORT) % 3 == 0


def test_the_ports_depend_on_the_name_alone() -> None:
    assert allocated_ports("loans") == allocated_ports("loans")
    names = [f"pipeline_{i}" for i in range(20)]
    assert len({allocated_ports(n)["proxy_port"] for n in names}) > 10
