"""The store on object storage: the chunk table in an S3 bucket, the timeline on PostgreSQL.

The S3 server is moto's, started by these tests in a child process on a free loopback
port (``_s3_server.py``); each test gets its own bucket and PostgreSQL schema.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from refrag_agent.errors import StoreError
from refrag_agent.lifecycle import Opening
from refrag_agent.memory import HashEncoder, MemoryStore, StoreSettings
from refrag_agent.timeline import Scope

from .conftest import PG_URL, drop_pg_schema, make_segment, pg_unavailable_reason

SERVER = Path(__file__).with_name("_s3_server.py")
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
# One chunk per segment (k below), so a forgotten word is never split across chunks.
K = 64


@dataclass(frozen=True)
class Bucket:
    """A bucket on the test server: the LanceDB URI to give the store, and its objects."""

    endpoint: str
    name: str

    @property
    def lance_uri(self) -> str:
        return f"s3://{self.name}/memory/lance"

    @property
    def storage_options(self) -> dict[str, str]:
        # The names LanceDB documents for S3-compatible servers; moto accepts any key.
        return {
            "endpoint": self.endpoint,
            "allow_http": "true",
            "region": "us-east-1",
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
        }

    async def holds(self, needle: bytes) -> bool:
        """Whether any object in the bucket contains these bytes."""
        async with httpx.AsyncClient(base_url=self.endpoint) as client:
            for key in await self._keys(client):
                response = await client.get(f"/{self.name}/{key}")
                response.raise_for_status()
                if needle in response.content:
                    return True
        return False

    async def _keys(self, client: httpx.AsyncClient) -> list[str]:
        keys: list[str] = []
        params = {"list-type": "2"}
        while True:
            response = await client.get(f"/{self.name}", params=params)
            response.raise_for_status()
            listing = ET.fromstring(response.content)
            keys += [node.text or "" for node in listing.iter(f"{_S3_NS}Key")]
            token = listing.findtext(f"{_S3_NS}NextContinuationToken")
            if token is None:
                return keys
            params = {"list-type": "2", "continuation-token": token}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an S3 server running in a child process for this module's tests."""
    log_path = tmp_path_factory.mktemp("s3") / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, str(SERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert server.stdin is not None and server.stdout is not None
    try:
        port = server.stdout.readline().strip()
        if not port.isdigit():
            pytest.fail(f"the S3 server did not start: {log_path.read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        # Closing its standard input tells the server to stop.
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()


@pytest.fixture
def bucket(s3_endpoint: str) -> Bucket:
    name = f"refrag-{uuid.uuid4().hex[:12]}"
    httpx.put(f"{s3_endpoint}/{name}").raise_for_status()
    # Objects readable without signing, so the test can read them with plain GETs.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{name}/*",
            }
        ],
    }
    httpx.put(
        f"{s3_endpoint}/{name}", params={"policy": ""}, content=json.dumps(policy)
    ).raise_for_status()
    return Bucket(endpoint=s3_endpoint, name=name)


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    """A PostgreSQL schema of its own for the timeline, dropped afterwards."""
    reason = await pg_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    schema = f"refrag_test_{uuid.uuid4().hex[:12]}"
    yield schema
    await drop_pg_schema(schema)


def connect(bucket: Bucket, schema: str, *, lance_uri: str | None = None) -> Opening[MemoryStore]:
    """A store with its timeline in ``schema`` and its chunk table in the bucket."""
    return MemoryStore.connect(
        PG_URL,
        lance_uri or bucket.lance_uri,
        encoder=HashEncoder(32),
        settings=StoreSettings(sql_schema=schema, maintenance_interval_s=None),
        storage_options=bucket.storage_options,
    )


async def test_append_search_forget_and_reopen(bucket: Bucket, pg_schema: str) -> None:
    scope = Scope(tenant="acme", session="alice-1")
    locker = make_segment(scope, "My locker code is 4821.", k=K)
    parcel = make_segment(scope, "The parcel goes to Oslo on Thursday.", k=K)
    secret = make_segment(scope, "The vault phrase is zebraquartz, keep it.", k=K)
    kept = [locker[0].id, parcel[0].id]

    async with connect(bucket, pg_schema) as store:
        assert await store.create_scope(scope)
        for segment, chunks in (locker, secret, parcel):
            await store.append(segment, chunks)

        hits = await store.search(scope, "locker code")
        assert hits[0].segment_id == locker[0].id
        assert hits[0].text_rank is not None  # the full-text index works on S3 too
        assert await bucket.holds(b"zebraquartz")

        assert await store.forget_segment(scope, secret[0].id)
        assert [s.id for s in await store.timeline(scope)] == kept
        assert await store.get_segment(scope, secret[0].id) is None
        found = await store.search(scope, "vault phrase zebraquartz")
        assert secret[0].id not in {hit.segment_id for hit in found}

        # The purge erases the forgotten text from every object in the bucket.
        report = await store.maintain()
        assert report.purged
        assert not await bucket.holds(b"zebraquartz")
        written = await store.fetch(scope, kept)
        stats = await store.stats()
        assert (stats.segments, stats.chunks, stats.bytes_on_disk) == (2, 2, None)

    async with connect(bucket, pg_schema) as reopened:
        timeline = await reopened.timeline(scope)
        assert [(s.id, s.text) for s in timeline] == [
            (locker[0].id, locker[0].text),
            (parcel[0].id, parcel[0].text),
        ]
        read = await reopened.fetch(scope, kept)
        assert read.segment_ids == written.segment_ids
        assert read.token_ids == written.token_ids
        np.testing.assert_array_equal(read.embeddings, written.embeddings)
        hits = await reopened.search(scope, "parcel Oslo")
        assert hits[0].segment_id == parcel[0].id
        assert secret[0].id not in {h.segment_id for h in await reopened.search(scope, "vault")}


async def test_a_missing_bucket_is_a_store_error(bucket: Bucket, pg_schema: str) -> None:
    uri = f"s3://{bucket.name}-missing/memory/lance"
    with pytest.raises(StoreError) as caught:
        await connect(bucket, pg_schema, lance_uri=uri)
    assert caught.value.context["uri"] == uri
