"""Serving ports a spec does not set: a block of three loopback ports chosen from the pipeline's name.

The block depends on the name alone, so a pipeline keeps its ports whatever other specs are loaded;
two pipelines landing on the same block are caught by the clash check across specs
(`spec_loading.check_across_specs`), and one of them then sets its ports in its spec.
"""

from __future__ import annotations

import zlib

PORT_KEYS = ("proxy_port", "blue_port", "green_port")
FIRST_PORT = 3800  # above the flights demo's 3700-3702 and the operator API's 3799
BLOCKS = 100  # 3800-4099


def allocated_ports(pipeline: str) -> dict[str, int]:
    """The proxy, blue and green ports of `pipeline` when its spec sets none."""
    first = FIRST_PORT + 3 * (zlib.crc32(pipeline.encode()) % BLOCKS)
    return {key: first + i for i, key in enumerate(PORT_KEYS)}
