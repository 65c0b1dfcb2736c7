"""One DynamoDB table through boto3's low-level client: plain Python values in and out.

Every read is strongly consistent; every write may carry a condition, and a condition that does not
hold is `ConditionFailed` (not an error: the caller reads again and says why). Writes that must land
together go through `transact` (TransactWriteItems, made idempotent across botocore's retries by its
ClientRequestToken). Any other failure is `UpstreamError(system="aws")`. Every call has connect and
read timeouts. The endpoint and credentials come from boto3's own chain (AWS_ENDPOINT_URL included).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from integrations.aws import reject_malformed
from integrations.errors import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S, UPSTREAM_TEXT_MAX, UpstreamError

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()
_MAX_PAGES = 50

# Building a client parses the service model (tens of ms): parse once, and share one client per
# process and settings. What boto3 reads from the environment is part of the key, so a changed
# AWS_ENDPOINT_URL or credential gets a new client. A forked child (another pid) builds its own.
_MODEL_LOADER = botocore.loaders.create_loader()
_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()
_ENVIRONMENT = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)


def _environment_key() -> tuple[str | None, ...]:
    return tuple(os.environ.get(name) for name in _ENVIRONMENT)


class ConditionFailed(Exception):
    """A ConditionExpression did not hold (for a transaction: `failed` lists the failing operations)."""

    def __init__(self, failed: Sequence[int] = ()) -> None:
        super().__init__(f"condition failed (operations {list(failed)})")
        self.failed = tuple(failed)


class TransactionConflict(Exception):
    """Another transaction touched the same item at the same moment: read again and retry."""


@dataclass(frozen=True)
class Put:
    item: dict[str, Any]
    condition: str | None = None
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Update:
    key: dict[str, Any]
    expression: str
    condition: str | None = None
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delete:
    key: dict[str, Any]
    condition: str | None = None
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    key: dict[str, Any]
    condition: str
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


Operation = Put | Update | Delete | Check


def _to_wire(value: Any) -> dict[str, Any]:
    if isinstance(value, float):
        value = Decimal(repr(value))
    return _SERIALIZER.serialize(value)


def _from_wire(value: dict[str, Any]) -> Any:
    plain = _DESERIALIZER.deserialize(value)
    return _plain(plain)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _item_to_wire(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _to_wire(v) for k, v in item.items() if v is not None}  # absent, not NULL: conditions stay simple


def _item_from_wire(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _from_wire(v) for k, v in item.items()}


def _expression_args(condition: str | None, names: dict[str, str], values: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if condition:
        args["ConditionExpression"] = condition
    if names:
        args["ExpressionAttributeNames"] = dict(names)
    if values:
        args["ExpressionAttributeValues"] = {k: _to_wire(v) for k, v in values.items()}
    return args


class DynamoTable:
    """`DynamoTable("cutover-state")`; region from the argument, else AWS_REGION / AWS_DEFAULT_REGION / profile."""

    def __init__(
        self,
        name: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        max_attempts: int = 3,
    ) -> None:
        self.name = name
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        # None lets boto3 honour AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_DYNAMODB itself.
        self._endpoint_url = endpoint_url
        self._config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
        )
        self._config_key = (connect_timeout_s, read_timeout_s, max_attempts)

    @property
    def client(self) -> Any:
        """A thread-safe client shared by every table object with the same settings in this process."""
        key = (os.getpid(), self.region, self._endpoint_url, self._config_key, _environment_key())
        client = _CLIENTS.get(key)
        if client is None:
            with _CLIENTS_LOCK:
                client = _CLIENTS.get(key)
                if client is None:
                    client = _CLIENTS[key] = self._new_client()
        return client

    def _new_client(self) -> Any:
        botocore_session = botocore.session.Session()
        botocore_session.register_component("data_loader", _MODEL_LOADER)  # models parsed once per process
        session = boto3.session.Session(botocore_session=botocore_session, region_name=self.region)
        try:
            client = session.client("dynamodb", endpoint_url=self._endpoint_url, config=self._config)
            client.meta.events.register("before-parse", reject_malformed)  # a cut-off answer is not a success
            return client
        except NoRegionError:
            raise UpstreamError(
                "aws",
                f"dynamodb {self.name}",
                "no AWS region: set AWS_REGION or AWS_DEFAULT_REGION (or a profile's region)",
                code="NoRegionError",
            ) from None

    def _call(self, api: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, api)(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed((0,)) from None
            if code == "TransactionCanceledException":
                reasons = [str(r.get("Code") or "None") for r in exc.response.get("CancellationReasons", [])]
                failed = [i for i, r in enumerate(reasons) if r == "ConditionalCheckFailed"]
                if failed:
                    raise ConditionFailed(failed) from None
                if any(r in ("TransactionConflict", "TransactionConflictException") for r in reasons):
                    raise TransactionConflict(", ".join(reasons)) from None
                if not reasons and "ConditionalCheckFailed" in str(exc):
                    raise ConditionFailed(()) from None
            if code in ("TransactionConflictException", "TransactionInProgressException"):
                raise TransactionConflict(code) from None
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = str(exc.response.get("Error", {}).get("Message", ""))[:UPSTREAM_TEXT_MAX]
            raise UpstreamError(
                "aws", f"{api} {self.name}", _reason(code, message), status_code=status, code=code
            ) from exc
        except BotoCoreError as exc:
            raise UpstreamError("aws", f"{api} {self.name}", str(exc), code=type(exc).__name__) from exc

    # --- reads -------------------------------------------------------------------------------

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        resp = self._call("get_item", TableName=self.name, Key=_item_to_wire(key), ConsistentRead=True)
        item = resp.get("Item")
        return _item_from_wire(item) if item else None

    def query(
        self,
        key_condition: str,
        *,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
        index: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        filter_expression: str | None = None,
        page_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Items in key order (reversed when descending), at most `limit` after the filter."""
        return list(
            self.iter_query(
                key_condition,
                names=names,
                values=values,
                index=index,
                descending=descending,
                limit=limit,
                filter_expression=filter_expression,
                page_size=page_size,
            )
        )

    def iter_query(
        self,
        key_condition: str,
        *,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
        index: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        filter_expression: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ConsistentRead": True,
            "ScanIndexForward": not descending,
            **_expression_args(None, names or {}, values or {}),
        }
        if index:
            kwargs["IndexName"] = index
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        if page_size or (limit and not filter_expression):
            kwargs["Limit"] = page_size or limit
        count = 0
        for _ in range(_MAX_PAGES):
            resp = self._call("query", **kwargs)
            for item in resp.get("Items", []):
                yield _item_from_wire(item)
                count += 1
                if limit is not None and count >= limit:
                    return
            last = resp.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last
        raise UpstreamError("aws", f"query {self.name}", f"more than {_MAX_PAGES} pages: narrow the query")

    # --- writes ------------------------------------------------------------------------------

    def put(self, op: Put) -> None:
        self._call(
            "put_item",
            TableName=self.name,
            Item=_item_to_wire(op.item),
            **_expression_args(op.condition, op.names, op.values),
        )

    def update(self, op: Update) -> dict[str, Any]:
        """The item as it is after the update."""
        resp = self._call(
            "update_item",
            TableName=self.name,
            Key=_item_to_wire(op.key),
            UpdateExpression=op.expression,
            ReturnValues="ALL_NEW",
            **_expression_args(op.condition, op.names, op.values),
        )
        return _item_from_wire(resp.get("Attributes", {}))

    def delete(self, op: Delete) -> None:
        self._call(
            "delete_item",
            TableName=self.name,
            Key=_item_to_wire(op.key),
            **_expression_args(op.condition, op.names, op.values),
        )

    def transact(self, ops: Sequence[Operation]) -> None:
        """All or nothing; ConditionFailed names the operations whose condition failed."""
        items: list[dict[str, Any]] = []
        for op in ops:
            args = {"TableName": self.name, **_expression_args(op.condition, op.names, op.values)}
            if isinstance(op, Put):
                items.append({"Put": {**args, "Item": _item_to_wire(op.item)}})
            elif isinstance(op, Update):
                items.append({"Update": {**args, "Key": _item_to_wire(op.key), "UpdateExpression": op.expression}})
            elif isinstance(op, Delete):
                items.append({"Delete": {**args, "Key": _item_to_wire(op.key)}})
            else:
                items.append({"ConditionCheck": {**args, "Key": _item_to_wire(op.key)}})
        self._call("transact_write_items", TransactItems=items)

    # --- the table itself --------------------------------------------------------------------

    def create_if_missing(
        self, *, hash_key: str = "pk", range_key: str = "sk", local_indexes: dict[str, str] | None = None
    ) -> bool:
        """Create the table (on-demand billing, string keys, local indexes name -> sort attribute) and
        wait until it is active. False when it already existed."""
        local_indexes = local_indexes or {}
        attributes = {hash_key, range_key, *local_indexes.values()}
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeySchema": [
                {"AttributeName": hash_key, "KeyType": "HASH"},
                {"AttributeName": range_key, "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if local_indexes:
            kwargs["LocalSecondaryIndexes"] = [
                {
                    "IndexName": name,
                    "KeySchema": [
                        {"AttributeName": hash_key, "KeyType": "HASH"},
                        {"AttributeName": attr, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for name, attr in local_indexes.items()
            ]
        try:
            self.client.create_table(**kwargs)
            created = True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                self._raise(exc, "create_table")
            created = False
        except BotoCoreError as exc:
            raise UpstreamError("aws", f"create_table {self.name}", str(exc), code=type(exc).__name__) from exc
        try:
            self.client.get_waiter("table_exists").wait(
                TableName=self.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        except (ClientError, BotoCoreError) as exc:
            raise UpstreamError(
                "aws", f"describe_table {self.name}", f"the table did not become active: {exc}"
            ) from exc
        return created

    def _raise(self, exc: ClientError, api: str) -> None:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message = str(exc.response.get("Error", {}).get("Message", ""))[:UPSTREAM_TEXT_MAX]
        raise UpstreamError("aws", f"{api} {self.name}", _reason(code, message), code=code) from exc


def _reason(code: str, message: str) -> str:
    suffix = f" ({message})" if message else ""
    if code == "ResourceNotFoundException":
        return f"table not found: check the table name and the region, or create it{suffix}"
    if code in ("AccessDeniedException", "UnrecognizedClientException", "403"):
        return f"access denied: grant the cutover role DynamoDB access to this table{suffix}"
    if code in ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"):
        return f"throttled by DynamoDB: retry shortly{suffix}"
    if code == "ValidationException":
        return f"DynamoDB refused the request{suffix}"
    return f"AWS refused the call{suffix}"
