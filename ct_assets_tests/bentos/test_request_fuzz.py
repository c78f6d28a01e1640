"""No request body gets a 5xx, through the real proxy in front of a real slot: named cases (times
near year 1 and 9999 with UTC offsets, Arrow view and dictionary strings, multipart with a bad
boundary, unsupported media types and encodings, gzip bodies and a gzip bomb, a 4,200-digit
integer, unknown query parameters, GET /version) and a bounded fuzz of generated bodies on the
three routes, every refusal answered as one object of one readable line and the request id. The
slot logs each refusal as one INFO line with its request id, no traceback. Its workers' memory
stays flat over 10,000 refused requests, and clients sending heavy bodies back to back neither
starve single-row requests nor get the slot marked down by its health check."""

from __future__ import annotations

import gzip
import json
import random
import sys
import threading
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from ct_assets.lib.core import processes
from ct_assets.lib.serving import arrow_request, proxy
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.body_limit import max_body_bytes
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.rollout import Deployment, HealthPolicy
from ct_assets.lib.serving.slots import INSTANCE_VARIABLE
from ct_assets_tests.bentos.test_service import DAYS, assert_error_shape, served  # noqa: F401 - the shared fixture
from ct_assets_tests.conftest import free_ports, requires_haproxy
from ct_assets_tests.lib.serving.test_predictor import request_rows

pytestmark = [pytest.mark.slow, requires_haproxy]
QUICK = HealthPolicy(canary_share=0.2, window_seconds=3, min_requests=3, max_p99_ms=2000, max_score_shift=0.5)
JSON = {"content-type": "application/json"}
ARROW = {"content-type": arrow_request.MEDIA_TYPE}
PER_ROUTE = 300


@pytest.fixture(scope="module")
def live(served):  # noqa: F811 - pytest fixture injection
    """The champion's bento deployed behind HAProxy."""
    spec, con, registry, root, record = (served[k] for k in ("spec", "con", "registry", "root", "record"))
    stable, blue, green, blue_check, green_check = free_ports(5)
    layout = ProxyLayout(
        root / "fuzz-proxy",
        stable,
        {"blue": blue, "green": green},
        {"blue": blue_check, "green": green_check},
    )
    env = {"CT_ONLINE_SNAPSHOT": str(root / "online"), "CT_PREDICTION_LOG": str(root / "log")}
    deploy = Deployment(root / "fuzz-deploy", layout, env, str(Path(sys.executable).parent / "bentoml"))
    rows = request_rows(con, spec, DAYS[-1], 20)
    expected = deploy_steps.reference_scores(con, spec, record, registry, rows, [DAYS[-1]])
    first = deploy.rollout(str(served["bento"].tag), (rows, expected), expected, QUICK, who="test")
    assert first.status == "switched", first.reasons
    with httpx.Client(base_url=f"http://127.0.0.1:{stable}", timeout=60) as client:
        yield {"client": client, "spec": spec, "rows": rows, "deploy": deploy, "root": root}
    deploy.shutdown()


def _timestamp_fields(spec) -> list[str]:
    return [n for n, c in spec.columns.items() if c.type == "timestamp" and n not in spec.post_event_columns]


def _arrow(table: pa.Table) -> bytes:
    return arrow_request.to_stream(table)


def _retyped(spec, rows: list[dict], kind: pa.DataType) -> bytes:
    """The rows as an Arrow stream whose string columns have type `kind` (or a dictionary of it)."""
    table = pa.ipc.open_stream(arrow_request.encode_rows(spec, rows)).read_all()
    columns = []
    for column in table.columns:
        if column.type == pa.string():
            if pa.types.is_dictionary(kind):
                column = column.combine_chunks().cast(kind.value_type).dictionary_encode()
            else:
                column = column.cast(kind)
        columns.append(column)
    return _arrow(pa.table(columns, names=table.column_names))


def test_named_bodies_get_the_right_4xx_or_an_answer(live) -> None:
    client, spec, rows = live["client"], live["spec"], live["rows"]
    good = rows[0]
    edges = (
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01 00:30+01",
        "0001-01-01T00:00:00",
    )
    for edge in edges:
        bad = {**good, **dict.fromkeys(_timestamp_fields(spec), edge)}
        answers = [
            client.post("/predict", json={"rows": [bad]}),
            client.post("/predict_columns", json={"columns": {k: [v] for k, v in bad.items()}}),
            client.post(
                "/predict_arrow",
                content=_arrow(pa.table({k: [v] for k, v in bad.items() if v is not None})),
                headers=ARROW,
            ),
        ]
        for answer in answers:
            assert answer.status_code == 400, (edge, answer.status_code, answer.text[:300])
            error = assert_error_shape(answer)
            assert "partition" not in error and (
                "outside the timestamps the service accepts" in error or "must be timestamp" in error
            ), error
    by_json = client.post("/predict", json={"rows": rows[:3]})
    assert by_json.status_code == 200
    probabilities = [p["probability"] for p in by_json.json()["predictions"]]
    for kind in (
        pa.large_string(),
        pa.string_view(),
        pa.dictionary(pa.int32(), pa.string_view()),
        pa.dictionary(pa.int8(), pa.large_string()),
    ):
        answer = client.post("/predict_arrow", content=_retyped(spec, rows[:3], kind), headers=ARROW)
        assert answer.status_code == 200, (kind, answer.text[:300])
        table = pa.ipc.open_stream(answer.content).read_all()
        assert table.column("probability").to_pylist() == probabilities

    huge = int("7" * 4200)
    answer = client.post("/predict", content=f'{{"rows": [{{"distance": {huge}}}]}}', headers=JSON)
    assert answer.status_code == 400 and "7" * 100 not in answer.text and len(answer.text) < 1000
    assert_error_shape(answer)

    refused = {
        415: [
            ("/predict", b"--x\r\n", {"content-type": "multipart/form-data; boundary="}),
            ("/predict", b"--zz\r\ngarbage", {"content-type": "multipart/form-data; boundary=zz"}),
            ("/predict", b"rows=1", {"content-type": "application/x-www-form-urlencoded"}),
            ("/predict_columns", b"{}", {"content-type": "text/plain"}),
            ("/predict_arrow", b"x", {"content-type": "application/json"}),
            ("/predict", b"{}", {**JSON, "content-encoding": "br"}),
        ],
        400: [
            ("/predict?pipeline=other", json.dumps({"rows": [good]}).encode(), JSON),
            ("/predict_columns?debug=1", b"{}", JSON),
            ("/predict_arrow?x=1", b"x", ARROW),
            ("/predict", b"not gzip", {**JSON, "content-encoding": "gzip"}),
        ],
    }
    for status, cases in refused.items():
        for path, body, headers in cases:
            answer = client.post(path, content=body, headers=headers)
            assert answer.status_code == status, (path, headers, answer.status_code, answer.text[:300])
            assert_error_shape(answer)

    zipped = client.post(
        "/predict",
        content=gzip.compress(json.dumps({"rows": rows[:3]}).encode()),
        headers={**JSON, "content-encoding": "gzip"},
    )
    assert (
        zipped.status_code == 200
        and [p["probability"] for p in zipped.json()["predictions"]] == probabilities
    )
    bomb = gzip.compress(b" " * (max_body_bytes() + 2**20), compresslevel=9)
    assert len(bomb) < max_body_bytes() // 100
    answer = client.post("/predict", content=bomb, headers={**JSON, "content-encoding": "gzip"})
    assert answer.status_code == 413 and "gzip body decompresses" in assert_error_shape(answer)

    version = client.get("/version")
    assert version.status_code == 200 and version.json()["pipeline"] == spec.name
    assert client.post(f"/predict?pipeline={spec.name}", json={"rows": [good]}).status_code == 200


def _junk(chaos: random.Random) -> object:
    return chaos.choice(
        [
            None, "", "x" * 60, -1, 2**63, -(2**63) - 1, int("9" * 200), 1e308, -0.0, True, [], {}, [1, 2],
            "2013-13-45T99:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-14:00",
            "2013-01-01T00:00:00+99:99", "\u0000\ud7ff", "é" * 10, float("nan"), float("inf"),
        ]
    )  # fmt: skip


def _json_body(chaos: random.Random, good: dict, columns: bool) -> bytes:
    row = dict(good)
    for _ in range(chaos.randint(1, 4)):
        field = chaos.choice([*row, "unexpected"])
        if chaos.random() < 0.2:
            row.pop(field, None)
        else:
            row[field] = _junk(chaos)
    if columns:
        payload: object = {"columns": {k: [v] for k, v in row.items()}}
        if chaos.random() < 0.2:
            payload = {"columns": row}
    else:
        payload = {"rows": [row]} if chaos.random() < 0.8 else {"rows": row}
    text = json.dumps(payload, allow_nan=True).encode()
    if chaos.random() < 0.1:  # cut short or spliced
        text = text[: chaos.randrange(len(text))] + bytes([chaos.randrange(256)])
    return text


def _arrow_body(chaos: random.Random, spec, good: dict) -> bytes:
    table = pa.ipc.open_stream(arrow_request.encode_rows(spec, [good])).read_all()
    for _ in range(chaos.randint(1, 3)):
        name = chaos.choice(table.column_names)
        position = table.column_names.index(name)
        value = _junk(chaos)
        try:
            column = pa.array([value])
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            column = pa.array([str(value)])
        if pa.types.is_string(column.type) and chaos.random() < 0.5:
            kind = chaos.choice([pa.string(), pa.string_view(), pa.large_string()])
            if chaos.random() < 0.5:
                encoded = column.dictionary_encode()
                column = pa.DictionaryArray.from_arrays(encoded.indices, encoded.dictionary.cast(kind))
            else:
                column = column.cast(kind)
        table = table.set_column(position, name, column)
    body = _arrow(table)
    if chaos.random() < 0.2:
        flipped = bytearray(body)
        flipped[chaos.randrange(len(flipped))] = chaos.randrange(256)
        body = bytes(flipped)
    return body


def _headers(chaos: random.Random, media: dict) -> dict:
    """The route's media type mostly; sometimes another, a parameter, or gzip (done by the caller)."""
    pick = chaos.random()
    if pick < 0.05:
        return {
            "content-type": chaos.choice(["text/plain", "multipart/form-data; boundary=", "application/xml"])
        }
    if pick < 0.1:
        return {"content-type": media["content-type"] + "; charset=utf-8"}
    return dict(media)


def test_fuzzed_bodies_on_every_route_never_get_a_5xx(live) -> None:
    client, spec, good = live["client"], live["spec"], live["rows"][0]
    chaos = random.Random(19)
    statuses: dict[tuple[str, int], int] = {}
    for index in range(PER_ROUTE * 3):
        route = ("/predict", "/predict_columns", "/predict_arrow")[index % 3]
        if route == "/predict_arrow":
            body, headers = _arrow_body(chaos, spec, good), _headers(chaos, ARROW)
        else:
            body, headers = _json_body(chaos, good, route == "/predict_columns"), _headers(chaos, JSON)
        if chaos.random() < 0.1:
            body, headers = gzip.compress(body), {**headers, "content-encoding": "gzip"}
        query = chaos.choice(["", "", "", f"?pipeline={spec.name}", "?pipeline=other", "?limit=1"])
        answer = client.post(route + query, content=body, headers=headers)
        if answer.status_code != 200:
            assert_error_shape(answer)
        statuses[(route, answer.status_code)] = statuses.get((route, answer.status_code), 0) + 1
    assert not [key for key in statuses if key[1] >= 500], statuses
    assert {route for route, status in statuses if status == 200} == {
        "/predict",
        "/predict_columns",
        "/predict_arrow",
    }


def test_refusals_are_logged_as_one_line_without_a_traceback(live) -> None:
    client = live["client"]
    for body in (b"not json", b'{"rows": 5}', b'{"rows": [{"distance": "far"}]}'):
        answer = client.post("/predict", content=body, headers={**JSON, "x-request-id": "fuzz-probe-1"})
        assert 400 <= answer.status_code < 500 and answer.headers["x-request-id"] == "fuzz-probe-1"
    client.post("/predict?nope=1", content=b"{}", headers={**JSON, "x-request-id": "fuzz-probe-2"})
    logs = "".join(path.read_text() for path in (live["root"] / "fuzz-deploy").glob("*.log"))
    assert "Traceback" not in logs
    assert "refused POST /predict (400) request_id=fuzz-probe-1" in logs
    assert "request_id=fuzz-probe-2" in logs


def _worker_rss(deploy: Deployment) -> int:
    """Resident memory summed over the active slot's worker processes (not its server process)."""
    state = deploy.state()
    info = state.slots[state.active]
    total = 0
    for pid in processes.with_environment(INSTANCE_VARIABLE, info.instance):
        if pid == info.pid:
            continue
        status = Path(f"/proc/{pid}/status").read_text()
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total * 1024


def test_worker_memory_is_stable_over_ten_thousand_bad_requests(live) -> None:
    client, spec, good = live["client"], live["spec"], live["rows"][0]
    chaos = random.Random(6)
    bodies: list[tuple[str, bytes, dict]] = []
    while len(bodies) < 200:  # refused bodies only: each route's share, replayed in turn
        route = ("/predict", "/predict_columns", "/predict_arrow")[len(bodies) % 3]
        if route == "/predict_arrow":
            body, headers = _arrow_body(chaos, spec, good), ARROW
        else:
            body, headers = _json_body(chaos, good, route == "/predict_columns"), JSON
        if client.post(route, content=body, headers=headers).status_code in (400, 413, 415):
            bodies.append((route, body, headers))

    def send(count: int) -> None:
        def worker(offset: int) -> None:
            with httpx.Client(base_url=str(client.base_url), timeout=60) as own:
                for index in range(offset, count, 2):
                    route, body, headers = bodies[index % len(bodies)]
                    status = own.post(route, content=body, headers=headers).status_code
                    assert 400 <= status < 500, (route, status)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    send(1000)
    after_first = _worker_rss(live["deploy"])
    send(9000)
    after_all = _worker_rss(live["deploy"])
    assert after_all <= after_first * 1.10, (after_first, after_all)


def test_heavy_bodies_do_not_starve_single_rows_or_mark_the_slot_down(live) -> None:
    """Three connections send 10,000-row bodies back to back for 15 s, keeping the workers busy;
    single-row requests meanwhile all succeed, and the proxy never marks the slot down."""
    client, rows, deploy, entity = live["client"], live["rows"], live["deploy"], live["spec"].entity_id
    layout, active = deploy.layout, deploy.state().active
    many = [{**row, entity: f"{row[entity]}-{i}"} for i in range(10_000 // len(rows)) for row in rows]
    heavy = json.dumps({"rows": many}).encode()
    assert client.post("/predict", content=heavy, headers=JSON).status_code == 200
    down_before = int(proxy.server_stats(layout)[active]["chkdown"])
    stop = threading.Event()
    heavy_statuses: list[int] = []

    def heavy_client() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as own:
            while not stop.is_set():
                heavy_statuses.append(own.post("/predict", content=heavy, headers=JSON).status_code)

    threads = [threading.Thread(target=heavy_client) for _ in range(3)]
    for thread in threads:
        thread.start()
    light: list[int] = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            light.append(client.post("/predict", json={"rows": [rows[len(light) % len(rows)]]}).status_code)
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    stats = proxy.server_stats(layout)[active]
    assert set(heavy_statuses) == {200} and len(heavy_statuses) >= 6, heavy_statuses
    assert light and set(light) == {200}, {s: light.count(s) for s in set(light)}
    assert int(stats["chkdown"]) == down_before and stats["status"].startswith("UP"), stats["status"]
