"""A connection dropped in the middle of a Snowflake load: the month is published exactly once.

A small proxy on 127.0.0.1 sits between the connector and the test server and closes both
sockets at the first request of one kind: before the server sees it (`request`), or after the
server ran it and before its answer reaches the connector (`answer`). Either way the connector
sends the request again; after a lost answer the test server runs it a second time, where
Snowflake would recognise the request id and answer for the first run (fakesnow 0.12 does not).
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Literal, NamedTuple

import dagster as dg
import pytest

from pipeline.definitions import build_warehouse, open_warehouse
from pipeline.ingest.stream import ReconciliationError, StagedLoad
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import Warehouse
from pipeline_tests.support import materialize_load, stage_month

MONTH = "2024-06"
QUERY_PATH = "/queries/v1/query-request"
HEADER_END = b"\r\n\r\n"
COMMENT = re.compile(r"^\s*/\*.*?\*/\s*", re.DOTALL)
REQUEST_ID = re.compile(r"[?&]requestId=([^&\s]+)")
# The statements a fault drops, told from the request: a statement's SQL without the pipeline's
# comment, else the HTTP request line (the test server has a PUT's file uploaded in a request of
# its own). The first of each is dropped: the rows' part, table or statement.
STATEMENTS: dict[str, Callable[[str], bool]] = {
    "put": lambda request: request.startswith("PUT 'file://"),
    "upload": lambda request: request.startswith("PUT /fs_bucket/"),
    "copy": lambda request: request.startswith("COPY INTO"),
    "delete": lambda request: request.startswith('DELETE FROM "RAW".'),
    "insert": lambda request: request.startswith('INSERT INTO "RAW".'),
    "ledger": lambda request: request.startswith('INSERT INTO "PIPELINE"."LOAD_LEDGER"'),
    "commit": lambda request: request == "COMMIT",
}
# Run twice, these do twice what they did once. Their lost answers are tested apart.
REPEATABLE_ONLY_ONCE = ("insert", "ledger")
DROPPED = [
    pytest.param(statement, when, id=f"{statement}-{when}")
    for statement in STATEMENTS
    for when in ("request", "answer")
    if when == "request" or statement not in REPEATABLE_ONLY_ONCE
]


class Request(NamedTuple):
    """A request as the proxy tells it apart: `key` is the same when the connector sends it
    again; `what` is the statement's SQL, or the request line of a request that is not a query."""

    key: str
    what: str

    def times_sent(self, requests: Sequence[Request]) -> int:
        return sum(request.key == self.key for request in requests)


class DroppingProxy:
    """Forwards loopback connections to `target`, and drops the connection carrying the first
    request that `drops` picks: before forwarding it (`when="request"`) or instead of its answer
    (`when="answer"`).

    Bounded: every socket times out after `timeout` seconds, and leaving the block closes the
    listener and every connection, which ends the threads.
    """

    def __init__(
        self,
        target: tuple[str, int],
        drops: Callable[[str], bool],
        when: Literal["request", "answer"],
        timeout: float = 60.0,
    ) -> None:
        self.target, self.drops, self.when, self.timeout = target, drops, when, timeout
        self.requests: list[Request] = []  # every request, in the order they came
        self.dropped: Request | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def __enter__(self) -> DroppingProxy:
        self._start(self._accept)
        return self

    def __exit__(self, *_: object) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for connection in self._sockets:
                _close(connection)
        for thread in self._threads:
            thread.join(timeout=5)

    def _start(self, work: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=work, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            server = socket.create_connection(self.target, timeout=self.timeout)
            client.settimeout(self.timeout)
            with self._lock:
                self._sockets += [client, server]
            lost = threading.Event()  # set: the next answer on this connection is dropped
            self._start(self._forward_requests, client, server, lost)
            self._start(self._forward_answers, server, client, lost)

    def _forward_requests(
        self, client: socket.socket, server: socket.socket, lost: threading.Event
    ) -> None:
        """One HTTP request at a time (the connector does not pipeline), told apart by its
        Content-Length, so each can be looked at before it is forwarded."""
        received = b""
        try:
            while True:
                head, body, received = _read_request(client, received)
                request = _describe(head, body)
                with self._lock:
                    self.requests.append(request)
                    drop = self.dropped is None and self.drops(request.what)
                    if drop:
                        self.dropped = request
                if drop and self.when == "request":
                    return
                if drop:
                    lost.set()
                server.sendall(head + HEADER_END + body)
        except (OSError, EOFError):
            return
        finally:
            if not lost.is_set():
                _close(client)
                _close(server)

    def _forward_answers(
        self, server: socket.socket, client: socket.socket, lost: threading.Event
    ) -> None:
        try:
            while chunk := server.recv(65536):
                if lost.is_set():
                    return  # the server has run the request; its answer goes nowhere
                client.sendall(chunk)
        except OSError:
            return
        finally:
            _close(client)
            _close(server)


def _read_request(client: socket.socket, received: bytes) -> tuple[bytes, bytes, bytes]:
    """The head and body of the next request, and what was received beyond it."""
    while HEADER_END not in received:
        received += _receive(client)
    head, _, received = received.partition(HEADER_END)
    headers = _headers(head)
    if "chunked" in headers.get("transfer-encoding", ""):
        raise NotImplementedError("the proxy reads requests with a Content-Length only")
    length = int(headers.get("content-length", "0"))
    while len(received) < length:
        received += _receive(client)
    return head, received[:length], received[length:]


def _receive(client: socket.socket) -> bytes:
    chunk = client.recv(65536)
    if not chunk:
        raise EOFError
    return chunk


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines)
    }


def _describe(head: bytes, body: bytes) -> Request:
    """A query request as its request id and its SQL without the pipeline's comment; any other
    as its request line.

    The connector may gzip the body; a copy is decompressed, the original bytes are forwarded.
    """
    request_line = head.decode("latin-1").split("\r\n")[0]
    if f" {QUERY_PATH}?" not in request_line:
        return Request(request_line, request_line)
    if _headers(head).get("content-encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    request_id = REQUEST_ID.search(request_line)
    assert request_id is not None, request_line
    return Request(request_id[1], COMMENT.sub("", json.loads(body)["sqlText"]))


def _close(connection: socket.socket) -> None:
    with suppress(OSError):  # not connected any more
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()


@contextmanager
def warehouse_through(proxy: DroppingProxy, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    """The deployment's warehouse, connecting through the proxy, retrying without long waits."""
    monkeypatch.setenv("SNOWFLAKE_HOST", "127.0.0.1")
    monkeypatch.setenv("SNOWFLAKE_PORT", str(proxy.port))
    configured = build_warehouse(Settings.from_env())
    # Short delays: the backoff itself is not under test, the retrying is.
    faster = configured.model_copy(update={"retry_base_seconds": 0.01})
    with dg.build_resources({"warehouse": faster}) as resources:
        yield resources.warehouse


def published(warehouse: Warehouse) -> dict[str, Any]:
    """What the month holds in the raw tables and the ledger."""
    rows, rejects = (
        warehouse.query(
            "select count(*) as n, count(distinct _line_number) as lines, "
            f"count(distinct _load_id) as loads, max(_load_id) as load_id from {table} "
            "where _month = ?",
            [MONTH],
        )[0]
        for table in ("raw.flights", "raw.flights_rejects")
    )
    ledger = warehouse.query(
        "select load_id, rows_loaded, rows_rejected from pipeline.load_ledger "
        "where month = ? and status = 'loaded' order by finished_at",
        [MONTH],
    )
    return {"rows": rows, "rejects": rejects, "ledger": ledger}


def once(staged: StagedLoad, load_id: str) -> dict[str, Any]:
    """`published` for a month that holds the staged load exactly once."""
    rows, rejects = staged.rows_loaded, staged.rows_rejected
    return {
        "rows": {"n": rows, "lines": rows, "loads": 1, "load_id": load_id},
        "rejects": {"n": rejects, "lines": rejects, "loads": 1, "load_id": load_id},
        "ledger": [{"load_id": load_id, "rows_loaded": rows, "rows_rejected": rejects}],
    }


def stage(settings: Settings, spec: DatasetSpec, seed: int) -> StagedLoad:
    """A month with rows and rejects: two parts, so two PUTs, uploads and COPYs, two INSERTs."""
    frame = month_frame(MONTH, rows_per_day=40 + seed, seed=seed, defect_ratio=0.01)
    staged = stage_month(settings, spec, MONTH, frame)
    assert staged.rows_rejected > 0
    return staged


@pytest.mark.parametrize(("statement", "when"), DROPPED)
def test_a_dropped_connection_still_publishes_the_month_once(
    statement: str,
    when: Literal["request", "answer"],
    snowflake_deployment: Settings,
    snowflake_server: dict[str, Any],
    flights: DatasetSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    staged = stage(snowflake_deployment, flights, seed=6)
    target = (snowflake_server["host"], int(snowflake_server["port"]))
    with (
        DroppingProxy(target, STATEMENTS[statement], when) as proxy,
        warehouse_through(proxy, monkeypatch) as warehouse,
    ):
        candidate = warehouse.replace_month(staged, run_id="run-1")

        assert proxy.dropped is not None, f"no {statement} went through the proxy"
        # Recovered by the connector sending the same request again.
        assert proxy.dropped.times_sent(proxy.requests) == 2
        assert published(warehouse) == once(staged, candidate.load_id)


@pytest.mark.parametrize("statement", REPEATABLE_ONLY_ONCE)
def test_a_publishing_statement_run_twice_is_rolled_back_and_published_once_on_retry(
    statement: str,
    snowflake_deployment: Settings,
    snowflake_server: dict[str, Any],
    flights: DatasetSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = snowflake_deployment
    old = stage(settings, flights, seed=5)
    with open_warehouse(settings) as warehouse:
        first = warehouse.replace_month(old, run_id="run-0")
        served = published(warehouse)
    assert served == once(old, first.load_id)
    new = stage(settings, flights, seed=6)
    target = (snowflake_server["host"], int(snowflake_server["port"]))
    with (
        DroppingProxy(target, STATEMENTS[statement], "answer") as proxy,
        warehouse_through(proxy, monkeypatch) as warehouse,
    ):
        with pytest.raises(ReconciliationError, match="rolled back"):
            warehouse.replace_month(new, run_id="run-1")
        assert proxy.dropped is not None
        assert proxy.dropped.times_sent(proxy.requests) == 2  # the test server ran it twice
        assert published(warehouse) == served

        # What the load step's RetryPolicy does next: the same staged parts, a new load.
        candidate = warehouse.replace_month(new, run_id="run-1")
        assert published(warehouse) == {
            **once(new, candidate.load_id),
            "ledger": [*served["ledger"], *once(new, candidate.load_id)["ledger"]],
        }


def test_a_statement_refused_before_the_file_is_read_fails_the_month_at_once(
    snowflake_deployment: Settings, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test server has no ALTER SESSION SET QUERY_TAG: with that capability left on, every
    # session's first statement is refused. The month's first statement (the spec's audit entry)
    # ran outside the handler that records a failure and knows a refusal is final, so the step
    # was retried for minutes.
    # (Names in any case: `STAGE_CLEANUP` was an unknown capability.)
    monkeypatch.setenv("PIPELINE_SNOWFLAKE_DISABLE", "STAGE_CLEANUP,temporary_tables")
    write_tsv(
        month_frame("2024-01", 2, seed=1),
        snowflake_deployment.landing_dir / flights.file_name("2024-01"),
    )

    result = materialize_load(flights, "2024-01", Settings.from_env())

    assert not result.success
    retried = [event for event in result.all_events if event.is_step_up_for_retry]
    assert retried == []
    (failure,) = result.get_step_failure_events()
    message = failure.step_failure_data.error.message
    # The ledger's own session is refused too: the failure says so rather than nothing.
    assert "QUERY_TAG" in message and "(the ledger could not record it: 009999" in message
