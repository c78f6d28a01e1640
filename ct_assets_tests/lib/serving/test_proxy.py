"""The HAProxy front: the config it renders, and a real HAProxy routing by weight between two real
HTTP servers, changed at run time over its admin socket."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets_tests.conftest import requires_haproxy
from ct_assets_tests.lib.serving.admin_socket import AdminSocket
from ct_assets_tests.lib.serving.conftest import wait_all_up


def test_config_lists_each_slot_with_its_weight_and_a_standby(tmp_path: Path) -> None:
    layout = ProxyLayout(tmp_path, 8000, {"blue": 8001, "green": 8002})
    text = proxy.render_config(layout, {"blue": 100})
    assert f"stats socket {layout.sockets / 'admin.sock'} mode 600 level admin" in text
    assert "bind 127.0.0.1:8000" in text
    assert f"server blue 127.0.0.1:8001 weight 100 {proxy.HEALTH} port 9001\n" in text
    assert f"server green 127.0.0.1:8002 weight 0 {proxy.HEALTH} port 9002\n" in text
    assert "option httpchk GET /alive" in text and "timeout check 3s" in text
    assert f"maxconn {proxy.SLOT_MAXCONN} maxqueue {proxy.SLOT_MAXQUEUE}" in text
    assert f"timeout queue {proxy.QUEUE_TIMEOUT}" in text
    assert ProxyLayout(tmp_path, 1, {"blue": 2}, {"blue": 7}).health_port("blue") == 7
    assert "server blue_standby 127.0.0.1:8001 backup track serving/blue\n" in text
    assert "server green_standby 127.0.0.1:8002 backup track serving/green disabled" in text
    assert (layout.config, layout.pidfile) == (tmp_path / "haproxy.cfg", tmp_path / "haproxy.pid")


def test_haproxy_binary_is_found_or_named(monkeypatch: pytest.MonkeyPatch) -> None:
    found = proxy.find_haproxy()
    if found is None:
        with pytest.raises(RuntimeError, match="haproxy is not installed"):
            proxy.haproxy_binary()
    else:
        assert proxy.haproxy_binary() == found and Path(found).is_file()


def _answers(layout: ProxyLayout, count: int) -> Counter:
    with httpx.Client(base_url=f"http://127.0.0.1:{layout.port}", timeout=5) as client:
        return Counter(client.get("/predict").text for _ in range(count))


@pytest.mark.slow
@requires_haproxy
def test_a_real_haproxy_routes_by_weight_and_changes_without_a_reload(running: ProxyLayout) -> None:
    wait_all_up(running)
    assert _answers(running, 10) == {"blue": 10}
    proxy.set_weights(running, {"blue": 0, "green": 100})
    assert _answers(running, 10) == {"green": 10}
    proxy.set_weights(running, {"blue": 50, "green": 50})
    assert _answers(running, 20) == {"blue": 10, "green": 10}
    stats = proxy.server_stats(running)
    assert set(stats) == {"blue", "green"} and int(stats["green"]["stot"]) == 20
    assert stats["blue"]["weight"] == "50"
    proxy.set_standby(running, "green", True)
    proxy.set_standby(running, "blue", False)
    with pytest.raises(RuntimeError, match="haproxy refused weight"):
        proxy.set_weights(running, {"purple": 10})


def test_waiting_for_a_slot_returns_once_the_proxy_sees_it_up_and_names_it_if_never(tmp_path: Path) -> None:
    stand_in = AdminSocket(ProxyLayout(tmp_path / "proxy", 8000, {"blue": 8001, "green": 8002}))
    try:
        stand_in.set("green", status="DOWN")
        threading.Timer(0.3, lambda: stand_in.set("green", status="UP")).start()
        proxy.wait_until_up(stand_in.layout, "green", timeout=10)
        assert len(stand_in.sent("show stat")) >= 2  # it looked again until the status changed
        stand_in.set("blue", status="DOWN")
        with pytest.raises(RuntimeError, match="the proxy on port 8000 never saw slot blue healthy in 0 s"):
            proxy.wait_until_up(stand_in.layout, "blue", timeout=0.3)
    finally:
        stand_in.close()
