"""The BentoML service end to end: a real bento of a real champion, served by `bentoml serve` on
loopback; answers match in-process CatBoost on the same features; malformed payloads get a 4xx whose
body is one object of one readable line and the request id (a fuzz of 1,000 of them never gets a 5xx
and the server stays up); every prediction lands in the prediction log."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from ct_assets.lib.core.dates import day_keys
from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.core.warehouse import partition_view_sql
from ct_assets.lib.data import online_snapshot
from ct_assets.lib.model import model_training
from ct_assets.lib.model import steps as model_steps
from ct_assets.lib.model.model_store import load_model
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.monitor.backtest import build_features
from ct_assets.lib.serving import arrow_request, bento_build, prediction_log
from ct_assets.lib.serving.allocator import allocator_env
from ct_assets.lib.serving.body_limit import max_body_bytes
from ct_assets_tests.conftest import write_flights_variant
from ct_assets_tests.lib.serving.test_predictor import request_rows

pytestmark = pytest.mark.slow
DAYS = day_keys("2013-01-01", "2013-01-08")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("serve")
    landing = root / "landing"  # its own: the session's flights_landing is shared and read-only
    spec = load_spec(
        write_flights_variant(
            root / "pipelines" / "flights_delay", {"training.min_rows": 500, "training.window_partitions": 8}
        )
    )
    from ct_assets.lib.core.warehouse import open_connection
    from ct_assets.lib.data import demo_source

    demo_source.land_context(landing, spec.name, list(spec.context_tables))
    for day in DAYS:
        demo_source.land_day(landing, spec.name, day)
    con = open_connection(root / "w.duckdb")
    build_features(con, spec, landing, DAYS)  # the data layer's library steps, as the assets run them
    registry = Registry(root / "registry", spec.name)
    candidate = model_steps.train_candidate(
        spec, registry, model_steps.freeze_training_set(con, spec, registry, None)
    )
    registry.update(candidate.version, verdict={"passed": True, "reasons": [], "notes": ["test"]})
    registry.promote(candidate.version, who="test", why="serve it")
    online_snapshot.publish(con, spec, DAYS[-1], root / "online", history_hours=48)
    record = registry.champion()
    bento = bento_build.build(spec, record, registry.models / f"{record.model_sha256}.cbm")
    port = _free_port()
    env = {
        **os.environ,
        "CT_ONLINE_SNAPSHOT": str(root / "online"),
        "CT_PREDICTION_LOG": str(root / "log"),
        "CT_SLOT": "blue",
    }
    env.update(allocator_env(env))  # as the deployment starts its slots
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "bentoml"),
            "serve",
            str(bento.tag),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(root / "server.log").open("w"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("bentoml serve did not get ready: " + (root / "server.log").read_text()[-2000:])
    yield {
        "url": url,
        "spec": spec,
        "con": con,
        "record": record,
        "registry": registry,
        "root": root,
        "bento": bento,
        "server": server,
    }
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    con.close()


def _logged(served) -> list[dict]:
    """Every prediction in the served slot's log, one flat record each."""
    return [
        prediction
        for path in prediction_log.log_files(served["root"] / "log")
        for request in prediction_log.read_requests(path)
        for prediction in prediction_log.predictions(request)
    ]


def test_bento_is_tagged_with_the_model_version(served) -> None:
    assert str(served["bento"].tag) == bento_build.bento_tag(served["spec"], served["record"])


def test_answers_match_in_process_scoring(served) -> None:
    spec, con, record = served["spec"], served["con"], served["record"]
    rows = request_rows(con, spec, DAYS[-1], 50)
    answer = httpx.post(f"{served['url']}/predict", json={"rows": rows}, timeout=30).json()
    assert answer["model_version"] == record.version and answer["slot"] == "blue"
    features = (
        con.execute(partition_view_sql(spec.name, "features", [DAYS[-1]])).df().set_index(spec.entity_id)
    )
    model = load_model(served["registry"].models, record.model_sha256)
    ids = [p["id"] for p in answer["predictions"]]
    expected = model_training.score(model, features.loc[ids].reset_index(), record.layout)
    # Identical, not just close: the service builds CatBoost's inputs without pandas.
    assert [p["probability"] for p in answer["predictions"]] == [float(p) for p in expected]
    assert all(p["decision"] == (p["probability"] >= record.threshold) for p in answer["predictions"])
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    by_column = httpx.post(f"{served['url']}/predict_columns", json={"columns": columns}, timeout=30).json()
    assert [p["probability"] for p in by_column["predictions"]] == [
        p["probability"] for p in answer["predictions"]
    ]
    # The log is written by a background thread, a few milliseconds after the answer.
    wanted, deadline = {answer["request_id"], by_column["request_id"]}, time.monotonic() + 10
    while True:
        logged = _logged(served)
        if wanted <= {line["request_id"] for line in logged} or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert wanted <= {line["request_id"] for line in logged}
    assert sum(line["request_id"] in wanted for line in logged) == 2 * len(rows)
    first = next(line for line in logged if line["request_id"] == answer["request_id"])
    assert first["model_version"] == record.version and first["segments"]["origin"] == rows[0]["origin"]
    assert first["entity_id"] == rows[0]["flight_id"] and first["event_time"].startswith(
        rows[0]["sched_dep_at"][:10]
    )


def assert_error_shape(response: httpx.Response) -> str:
    """A refusal: a 4xx whose body is one object, {"error": one line, "request_id": the header's}."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "request_id"}, body
    assert isinstance(body["error"], str) and body["error"] and "\n" not in body["error"], body
    assert body["request_id"] == response.headers["x-request-id"], body
    return body["error"]


def test_malformed_payloads_get_4xx_with_a_message(served) -> None:
    url, spec, con = served["url"], served["spec"], served["con"]
    good = request_rows(con, spec, DAYS[-1], 1)[0]
    wanted = 'the body must be a JSON object {"rows": [...]}'
    cases = [
        (b"", f"the body is empty: {wanted}"),
        (b"{}", f'{wanted}: it has no "rows" field'),
        (json.dumps({"rowz": []}).encode(), f'{wanted}: it has no "rows" field'),
        (b"[]", wanted),
        (json.dumps([{"rows": [good]}]).encode(), wanted),
        (b"not json", "the body is not valid JSON (expected ident at line 1 column 2)"),
        ('{"rows": [{"origin": "\xe9"}]}'.encode("latin-1"), "the body is not valid UTF-8"),
        (b'{"rows": 5}', "rows must be a non-empty list of objects"),
        (
            json.dumps({"rows": [{**good, "distance": "far"}]}).encode(),
            "row 0: field 'distance' must be integer",
        ),
        (json.dumps({"rows": [good], "pipeline": "loans"}).encode(), "unknown pipeline 'loans'"),
        (
            json.dumps({"rows": [good] * 10_001}).encode(),
            "batch of 10001 rows is larger than the limit of 10000",
        ),
        (json.dumps({"rows": [good, good]}).encode(), "appears more than once in the request"),
    ]
    for body, message in cases:
        response = httpx.post(
            f"{url}/predict", content=body, headers={"content-type": "application/json"}, timeout=60
        )
        error = assert_error_shape(response)
        assert message in error, (body[:80], error)
        assert "pydantic" not in error and "validation error for" not in error, error
    columns = httpx.post(f"{url}/predict_columns", json={"columns": [good]}, timeout=30)
    assert assert_error_shape(columns) == "columns must be an object mapping each field to a list of values"
    wrong_method = httpx.get(f"{url}/predict", timeout=30)
    assert wrong_method.status_code == 405 and assert_error_shape(wrong_method).startswith(
        "GET is not allowed"
    )
    unknown = httpx.post(f"{url}/nosuch", json={}, timeout=30)
    assert unknown.status_code == 404 and assert_error_shape(unknown).startswith("no route '/nosuch'")


def test_bodies_over_the_size_limit_get_413_before_parsing(served) -> None:
    url = served["url"]
    too_big = b"x" * (max_body_bytes() + 1)
    with httpx.Client(timeout=60) as client:
        json_type = {"content-type": "application/json"}
        for path, media_type in (
            ("/predict", json_type["content-type"]),
            ("/predict_arrow", arrow_request.MEDIA_TYPE),
        ):
            response = client.post(f"{url}{path}", content=too_big, headers={"content-type": media_type})
            assert response.status_code == 413, (path, response.status_code, response.text[:200])
            assert "larger than the limit of" in assert_error_shape(response)

        def chunked() -> Iterator[bytes]:  # no Content-Length: refused while it streams in
            for _ in range(max_body_bytes() // 2**20 + 2):
                yield b"x" * 2**20

        response = client.post(f"{url}/predict", content=chunked(), headers=json_type)
        assert response.status_code == 413 and "CT_MAX_BODY_BYTES" in response.json()["error"]

        # A small Arrow body whose zstd-compressed buffers would decompress past the limit.
        huge = pa.table({"origin": pa.array(["A" * 2**20] * (max_body_bytes() // 2**20 + 1))})
        sink = pa.BufferOutputStream()
        zstd = pa.ipc.IpcWriteOptions(compression="zstd")
        with pa.ipc.new_stream(sink, huge.schema, options=zstd) as writer:
            writer.write_table(huge)
        bomb = sink.getvalue().to_pybytes()
        assert len(bomb) < 2**20
        response = client.post(
            f"{url}/predict_arrow", content=bomb, headers={"content-type": arrow_request.MEDIA_TYPE}
        )
        assert response.status_code == 413, (response.status_code, response.text[:200])
        assert "once decompressed, larger than the limit" in response.json()["error"]
        assert client.get(f"{url}/readyz").status_code == 200


def test_fuzz_of_1000_malformed_payloads_never_gets_a_5xx(served) -> None:
    url, spec, con = served["url"], served["spec"], served["con"]
    good = request_rows(con, spec, DAYS[-1], 1)[0]
    chaos = random.Random(7)
    junk = [None, "", "x" * 50, -1, 1e308, True, [], {}, [1, 2], "2013-13-45T99:00:00Z", float("nan")]
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=30) as client:
        for index in range(1000):
            row = dict(good)
            for _ in range(chaos.randint(1, 4)):
                field = chaos.choice([*row, "unexpected"])
                action = chaos.random()
                if action < 0.2 and field in row:
                    row.pop(field)
                else:
                    row[field] = chaos.choice(junk)
            shape = index % 5
            payload = {"rows": [row]} if shape < 3 else {"rows": row} if shape == 3 else {"columns": [row]}
            body = json.dumps(payload, allow_nan=True)
            path = "/predict_columns" if "columns" in payload else "/predict"
            response = client.post(f"{url}{path}", content=body, headers={"content-type": "application/json"})
            if response.status_code != 200:
                assert_error_shape(response)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    assert not [s for s in statuses if s >= 500], statuses
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200


def _post_arrow(client: httpx.Client, url: str, body: bytes, path: str = "/predict_arrow") -> httpx.Response:
    return client.post(f"{url}{path}", content=body, headers={"content-type": arrow_request.MEDIA_TYPE})


def test_the_request_id_is_one_in_the_header_the_answer_and_the_log(served) -> None:
    spec, con, url = served["spec"], served["con"], served["url"]
    rows = request_rows(con, spec, DAYS[-1], 3)
    with httpx.Client(timeout=30) as client:
        traced = client.post(f"{url}/predict", json={"rows": rows}, headers={"x-request-id": "trace-4711"})
        fresh = client.post(f"{url}/predict", json={"rows": rows})
        arrow = _post_arrow(client, url, arrow_request.encode_rows(spec, rows))
    assert traced.headers["x-request-id"] == traced.json()["request_id"] == "trace-4711"
    assert fresh.headers["x-request-id"] == fresh.json()["request_id"] != "trace-4711"
    metadata = pa.ipc.open_stream(arrow.content).read_all().schema.metadata
    assert arrow.headers["x-request-id"] == metadata[b"request_id"].decode()
    wanted, deadline = {"trace-4711", fresh.json()["request_id"]}, time.monotonic() + 10
    while not wanted <= {line["request_id"] for line in _logged(served)} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(line["request_id"] == "trace-4711" for line in _logged(served)) == len(rows)


def test_arrow_endpoint_answers_like_the_json_one(served) -> None:
    spec, con, record, url = served["spec"], served["con"], served["record"], served["url"]
    rows = request_rows(con, spec, DAYS[-1], 60)
    with httpx.Client(timeout=30) as client:
        by_json = client.post(f"{url}/predict", json={"rows": rows}).json()
        response = _post_arrow(client, url, arrow_request.encode_rows(spec, rows))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == arrow_request.MEDIA_TYPE
    answer = pa.ipc.open_stream(response.content).read_all()
    meta = {k.decode(): v.decode() for k, v in answer.schema.metadata.items()}
    assert meta["model_version"] == record.version and meta["slot"] == "blue"
    assert answer.column("id").to_pylist() == [row["flight_id"] for row in rows]
    assert answer.column("probability").to_pylist() == [p["probability"] for p in by_json["predictions"]]
    assert answer.column("decision").to_pylist() == [p["decision"] for p in by_json["predictions"]]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logged = [line for line in _logged(served) if line["request_id"] == meta["request_id"]]
        if len(logged) == len(rows):
            break
        time.sleep(0.05)
    assert sorted(line["entity_id"] for line in logged) == sorted(row["flight_id"] for row in rows)


def test_arrow_endpoint_refuses_bad_requests_with_a_message(served) -> None:
    spec, con, url = served["spec"], served["con"], served["url"]
    rows = request_rows(con, spec, DAYS[-1], 3)
    good = arrow_request.encode_rows(spec, rows)
    cases = [
        (b"not arrow", arrow_request.MEDIA_TYPE, 400, "Arrow"),
        (
            arrow_request.encode_rows(spec, []),
            None,
            400,
            "the Arrow table has no rows: send at least one row",
        ),
        (good[: len(good) // 2], arrow_request.MEDIA_TYPE, 400, "Arrow"),
        (arrow_request.encode_rows(spec, [rows[0], {**rows[1], "distance": -5}]), None, 400, "row 1"),
        (arrow_request.encode_rows(spec, [rows[0], rows[0]]), None, 400, "row 1"),
        (json.dumps({"rows": rows}).encode(), "application/json", 415, arrow_request.MEDIA_TYPE),
    ]
    with httpx.Client(timeout=30) as client:
        for body, media_type, status, message in cases:
            response = client.post(
                f"{url}/predict_arrow",
                content=body,
                headers={"content-type": media_type or arrow_request.MEDIA_TYPE},
            )
            assert response.status_code == status, (status, response.status_code, response.text[:300])
            assert message in assert_error_shape(response)
        unknown = client.post(
            f"{url}/predict_arrow?pipeline=loans",
            content=good,
            headers={"content-type": arrow_request.MEDIA_TYPE},
        )
        assert unknown.status_code == 400 and "unknown pipeline 'loans'" in unknown.json()["error"]


def test_fuzz_of_500_corrupted_arrow_requests_never_gets_a_5xx(served) -> None:
    spec, con, url = served["spec"], served["con"], served["url"]
    rows = request_rows(con, spec, DAYS[-1], 5)
    table = pa.ipc.open_stream(arrow_request.encode_rows(spec, rows)).read_all()
    chaos = random.Random(11)
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=30) as client:
        for index in range(500):
            if index % 2:  # bytes: flipped, cut or spliced
                body = bytearray(arrow_request.encode_rows(spec, rows))
                for _ in range(chaos.randint(1, 8)):
                    body[chaos.randrange(len(body))] = chaos.randrange(256)
                body = bytes(body[: chaos.randint(0, len(body))]) if chaos.random() < 0.3 else bytes(body)
            else:  # a well-formed stream of the wrong table: columns dropped, renamed or retyped
                broken = table
                for _ in range(chaos.randint(1, 3)):
                    name = chaos.choice(broken.column_names)
                    position = broken.column_names.index(name)
                    action = chaos.random()
                    if action < 0.3:
                        broken = broken.drop_columns([name])
                    elif action < 0.5:
                        broken = broken.rename_columns(
                            [n if n != name else "unexpected" for n in broken.column_names]
                        )
                    else:
                        junk = chaos.choice(
                            [
                                pa.array([True] * len(rows)),
                                pa.array([1.5] * len(rows)),
                                pa.array(["x"] * len(rows)),
                                pa.nulls(len(rows)),
                                pa.array([-(2**62)] * len(rows)),
                            ]
                        )
                        broken = broken.set_column(position, name, junk)
                    if not broken.column_names:
                        break
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, broken.schema) as writer:
                    writer.write_table(broken)
                body = sink.getvalue().to_pybytes()
            response = _post_arrow(client, url, body)
            if response.status_code != 200:
                assert_error_shape(response)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    assert not [s for s in statuses if s >= 500], statuses
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200


def _slot_samples(url: str, *names: str) -> dict[str, float]:
    """The blue slot's samples of these names on /metrics, read through prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in names and sample.labels.get("slot") == "blue"
    }


def test_metrics_endpoint_shows_rows_scored_and_worker_memory(served) -> None:
    spec, con, url = served["spec"], served["con"], served["url"]
    rows = request_rows(con, spec, DAYS[-1], 25)
    names = ("ct_predictions_total", "ct_slot_memory_rss_bytes")
    before = _slot_samples(url, *names).get("ct_predictions_total", 0.0)
    httpx.post(f"{url}/predict", json={"rows": rows}, timeout=30).raise_for_status()
    after = _slot_samples(url, *names)
    assert after["ct_predictions_total"] == before + len(rows)
    # The workers' resident memory, summed: each holds Python, CatBoost, DuckDB and the model.
    assert 100 * 2**20 < after["ct_slot_memory_rss_bytes"] < 8 * 2**30


def _batch_samples(url: str) -> dict[str, float]:
    """The slot's adaptive-batching histogram: feature queries (count) and requests they served (sum)."""
    return _slot_samples(url, "ct_batch_requests_count", "ct_batch_requests_sum")


def test_many_concurrent_clients_are_served_not_refused(served) -> None:
    """BentoML divides the service's concurrency limit among its workers, and connections spread
    over the workers unevenly. Each worker admits 64 requests at once, so 80 concurrent clients
    straight to a two-worker slot are all answered, none refused with a 429 (with 64 for the whole
    service, some were)."""
    import asyncio

    spec, con, url = served["spec"], served["con"], served["url"]
    body = arrow_request.encode_rows(spec, request_rows(con, spec, DAYS[-1], 240))
    clients = 80

    async def send_all() -> list[int]:
        start = asyncio.Event()
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:

            async def send() -> int:
                await start.wait()
                response = await client.post(
                    f"{url}/predict_arrow", content=body, headers={"content-type": arrow_request.MEDIA_TYPE}
                )
                return response.status_code

            tasks = [asyncio.ensure_future(send()) for _ in range(clients)]
            await asyncio.sleep(0.1)
            start.set()
            return await asyncio.gather(*tasks)

    statuses = asyncio.run(send_all())
    assert statuses == [200] * clients, sorted(set(statuses))


def test_concurrent_requests_each_get_the_answer_they_get_alone(served) -> None:
    """Requests that arrive together may share a feature query (adaptive batching); each still gets
    exactly its answer alone, with its own request id and log line, whether JSON or Arrow, and also
    when several carry the same flights (those are never featurized together)."""
    import threading

    spec, con, url = served["spec"], served["con"], served["url"]
    rows = request_rows(con, spec, DAYS[-1], 240)
    parts = [rows[i * 30 : (i + 1) * 30] for i in range(8)] + [rows[:30], rows[15:45], rows[:30], rows[200:]]
    with httpx.Client(timeout=60) as client:
        alone = [client.post(f"{url}/predict", json={"rows": part}).json() for part in parts]
    before = _batch_samples(url)
    start = threading.Barrier(len(parts))
    answers: list[tuple[str, list[str], list[float]] | None] = [None] * len(parts)

    def send(index: int) -> None:
        with httpx.Client(timeout=60) as client:
            start.wait()
            if index % 2:
                response = _post_arrow(client, url, arrow_request.encode_rows(spec, parts[index]))
                table = pa.ipc.open_stream(response.content).read_all()
                request_id = table.schema.metadata[b"request_id"].decode()
                answers[index] = (
                    request_id,
                    table.column("id").to_pylist(),
                    table.column("probability").to_pylist(),
                )
            else:
                answer = client.post(f"{url}/predict", json={"rows": parts[index]}).json()
                predictions = answer["predictions"]
                answers[index] = (
                    answer["request_id"],
                    [p["id"] for p in predictions],
                    [p["probability"] for p in predictions],
                )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(parts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    after = _batch_samples(url)
    for answer, part, single in zip(answers, parts, alone, strict=True):
        assert answer is not None
        assert answer[1] == [row["flight_id"] for row in part]
        assert answer[2] == [p["probability"] for p in single["predictions"]]
    assert len({answer[0] for answer in answers if answer}) == len(parts)
    # Every request went through exactly one feature query, merged or not.
    assert after["ct_batch_requests_sum"] - before.get("ct_batch_requests_sum", 0.0) == len(parts)
    queries = after["ct_batch_requests_count"] - before.get("ct_batch_requests_count", 0.0)
    assert 1 <= queries <= len(parts)
    deadline = time.monotonic() + 10
    wanted = {answer[0]: answer[1] for answer in answers if answer}
    while time.monotonic() < deadline:
        logged: dict[str, list[str]] = {}
        for line in _logged(served):
            if line["request_id"] in wanted:
                logged.setdefault(line["request_id"], []).append(line["entity_id"])
        if sum(map(len, logged.values())) == sum(map(len, wanted.values())):
            break
        time.sleep(0.05)
    assert logged == wanted


def test_stopping_the_server_writes_every_answered_prediction(served) -> None:
    """Last in the module: it stops the server. A SIGTERM drains the background log writers."""
    url, spec, con = served["url"], served["spec"], served["con"]
    rows = request_rows(con, spec, DAYS[-1], 40)
    with httpx.Client(timeout=30) as client:
        answered = [client.post(f"{url}/predict", json={"rows": [row]}).json()["request_id"] for row in rows]
        answered.append(
            client.post(
                f"{url}/predict_columns", json={"columns": {k: [r[k] for r in rows] for k in rows[0]}}
            ).json()["request_id"]
        )
    served["server"].terminate()
    served["server"].wait(timeout=30)
    logged: dict[str, int] = {}
    for line in _logged(served):
        logged[line["request_id"]] = logged.get(line["request_id"], 0) + 1
    assert [logged.get(r, 0) for r in answered] == [1] * 40 + [40]
