"""The liveness endpoint answers from its own thread: 200 while the event loop turns, even while
the loop is busy for a moment; 503 once the loop has stalled past the limit; 404 off its path."""

from __future__ import annotations

import asyncio
import time

import httpx

from ct_assets.lib.serving.liveness import Liveness
from ct_assets_tests.conftest import free_ports


def test_alive_while_the_loop_turns_and_not_once_it_stalls() -> None:
    port = free_ports(1)[0]

    async def scenario() -> list[int]:
        liveness = Liveness(port, asyncio.get_running_loop(), stall_seconds=1.5).start()
        url = f"http://127.0.0.1:{port}/alive"
        statuses = []
        try:
            await asyncio.sleep(0.6)
            statuses.append((await asyncio.to_thread(httpx.get, url, timeout=5)).status_code)
            # a second peer on the same port (another worker of the slot) binds fine
            Liveness(port, asyncio.get_running_loop()).close()
            # busy for under the limit: a check sent meanwhile is still answered 200, from the thread
            check = asyncio.create_task(asyncio.to_thread(httpx.get, url, timeout=5))
            await asyncio.sleep(0.05)
            time.sleep(0.8)  # the loop blocked, as by a large body
            statuses.append((await check).status_code)
            time.sleep(2.5)  # stalled past the limit
            statuses.append(httpx.get(url, timeout=5).status_code)
            await asyncio.sleep(1.2)  # turning again
            statuses.append((await asyncio.to_thread(httpx.get, url, timeout=5)).status_code)
            statuses.append(
                (await asyncio.to_thread(httpx.get, url.replace("alive", "x"), timeout=5)).status_code
            )
        finally:
            liveness.close()
        return statuses

    assert asyncio.run(scenario()) == [200, 200, 503, 200, 404]
