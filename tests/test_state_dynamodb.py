"""commands.state on DynamoDB: the same contract as SQLite, against moto's ThreadedMotoServer over HTTP.

The server runs on a free loopback port for this module, and AWS_ENDPOINT_URL points boto3 at it (as
boto3 resolves it natively, in this process and in the spawned ones). Each test gets its own table.

moto answers requests on several threads without serialising its backends: a TransactWriteItems
snapshots the table and restores the snapshot when a condition fails, which can undo a write another
thread made meanwhile. Real DynamoDB serialises writes to an item. So requests to this server are
serialised by a middleware, which makes moto behave as DynamoDB does for conditional writes; the
concurrency under test is the store's (several clients and processes racing), not moto's.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.moto_server.werkzeug_app import MotoRequestHandler
from moto.server import ThreadedMotoServer

from commands.state import StateStore, StoreConfigError, StoreUnavailable, open_store
from commands.state.dynamodb import DynamoStore
from integrations.dynamodb_table import ConditionFailed, DynamoTable, Put, Update
from integrations.errors import UpstreamError
from tests.test_state_sqlite import StoreContract

REGION = "eu-central-1"


class _Serialised:
    """WSGI middleware: one request at a time, as DynamoDB's per-item write ordering would have it."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self._lock:
            return list(self._app(environ, start_response))


class _Quiet(MotoRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture(scope="module")
def aws_env() -> Iterator[dict[str, str]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    wsgi = server._server
    assert wsgi is not None
    wsgi.app = _Serialised(wsgi.app)
    wsgi.RequestHandlerClass = _Quiet
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.delenv("AWS_REGION", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        yield env
    server.stop()


def _fresh_table_url() -> str:
    return f"dynamodb://cutover-{uuid.uuid4().hex[:12]}"


class TestDynamoContract(StoreContract):
    race_seconds = 1.5  # each attempt is an HTTP round trip here, so race a little longer
    race_iterations = 45

    @pytest.fixture
    def store(self, aws_env: dict[str, str]) -> Iterator[StateStore]:
        s = open_store(_fresh_table_url())
        assert isinstance(s, DynamoStore)
        assert s.create_table_if_missing() is True
        yield s
        s.close()

    @pytest.fixture
    def child_env(self, aws_env: dict[str, str]) -> dict[str, str]:
        return dict(aws_env)


def test_the_url_names_the_table_and_the_region_comes_from_the_environment(aws_env: dict[str, str]) -> None:
    store = open_store("dynamodb://cutover-state")
    assert isinstance(store, DynamoStore) and store.table.name == "cutover-state"
    assert store.table.region == REGION
    assert store.table.client.meta.region_name == REGION
    assert store.table.client.meta.endpoint_url == aws_env["AWS_ENDPOINT_URL"]  # boto3's own resolution
    explicit = open_store("dynamodb://cutover-state?region=us-east-2")
    assert explicit.table.client.meta.region_name == "us-east-2"


def test_aws_region_wins_over_the_default_region(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    assert open_store("dynamodb://cutover-state").table.region == "ap-southeast-2"


def test_every_call_has_connect_and_read_timeouts(aws_env: dict[str, str]) -> None:
    config = open_store("dynamodb://cutover-state").table.client.meta.config
    assert config.connect_timeout == 3.0 and config.read_timeout == 10.0
    assert config.retries["total_max_attempts"] == 3


def test_a_missing_table_is_reported_by_check_reachable(aws_env: dict[str, str]) -> None:
    store = open_store("dynamodb://no-such-table")
    with pytest.raises(StoreUnavailable, match="no-such-table") as caught:
        store.check_reachable()
    assert "table not found" in str(caught.value)
    with pytest.raises(StoreUnavailable):
        store.last_run("prod", "preflight")


def test_an_unreachable_endpoint_fails_fast_with_the_reason(aws_env: dict[str, str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    table = DynamoTable("t-unreachable", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unavailable") as caught:
        DynamoStore(table).check_reachable()
    assert time.monotonic() - started < 5
    assert "EndpointConnectionError" in str(caught.value)


def test_create_table_if_missing_is_idempotent_and_makes_the_indexes(aws_env: dict[str, str]) -> None:
    store = open_store(_fresh_table_url())
    assert store.create_table_if_missing() is True
    assert store.create_table_if_missing() is False
    described = store.table.client.describe_table(TableName=store.table.name)["Table"]
    assert {i["IndexName"] for i in described["LocalSecondaryIndexes"]} == {"by_time", "by_command"}
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    store.check_reachable()


def test_conditional_writes_refuse_when_the_condition_does_not_hold(aws_env: dict[str, str]) -> None:
    table = DynamoTable(f"raw-{uuid.uuid4().hex[:8]}")
    table.create_if_missing()
    table.put(Put({"pk": "a", "sk": "b", "n": 1, "f": 0.5}, condition="attribute_not_exists(pk)"))
    with pytest.raises(ConditionFailed):
        table.put(Put({"pk": "a", "sk": "b", "n": 2}, condition="attribute_not_exists(pk)"))
    with pytest.raises(ConditionFailed) as caught:
        table.transact(
            [
                Put({"pk": "c", "sk": "d"}),
                Update({"pk": "a", "sk": "b"}, "SET n = :two", condition="n = :zero", values={":two": 2, ":zero": 0}),
            ]
        )
    assert caught.value.failed == (1,)
    assert table.get({"pk": "c", "sk": "d"}) is None  # all or nothing
    assert table.get({"pk": "a", "sk": "b"}) == {"pk": "a", "sk": "b", "n": 1, "f": 0.5}
    with pytest.raises(UpstreamError, match="ValidationException"):
        table.put(Put({"pk": "a"}))  # no sort key


def test_a_bad_dynamodb_url_is_a_value_error() -> None:
    with pytest.raises(StoreConfigError, match="table name"):
        open_store("dynamodb://x")
    with pytest.raises(ValueError, match="dynamodb://TABLE"):
        open_store("dynamodb://table/sub/path")


def test_no_region_anywhere_is_a_clear_reason(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))  # no profile region either
    store = open_store("dynamodb://cutover-state")
    with pytest.raises(StoreUnavailable, match="no AWS region: set AWS_REGION or AWS_DEFAULT_REGION"):
        store.check_reachable()
