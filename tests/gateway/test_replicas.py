"""Replica choice in the gateway: fewest outstanding requests from this process, whatever
the protocol (gateway/core.py), and a server that refused a connection skipped for a while.
tests/gateway/test_grpc.py shows it over gRPC against a real stack."""
import asyncio
import time

import pytest

from gateway import config
from gateway.core import Core, Replicas
from gateway.errors import GatewayError, Unreached


def test_the_replica_with_the_fewest_outstanding_requests_is_picked():
    replicas = Replicas()
    urls = "http://a:1 http://b:1 http://c:1"
    replicas.outstanding.update({"http://a:1": 3, "http://b:1": 1, "http://c:1": 2})
    assert replicas.pick(urls) == "http://b:1"
    replicas.outstanding["http://b:1"] = 5
    assert replicas.pick(urls) == "http://c:1"
    assert replicas.pick(urls, exclude="http://c:1") == "http://a:1"


def test_one_replica_is_picked_without_splitting_and_none_when_there_is_none():
    replicas = Replicas()
    assert replicas.pick("http://a:1") == "http://a:1"
    assert replicas.pick("") is None
    assert replicas.pick("http://a:1", exclude="http://a:1") is None


def test_a_server_that_refused_is_skipped_until_its_time_is_up(monkeypatch):
    replicas = Replicas()
    replicas.down("http://a:1")
    assert replicas.pick("http://a:1 http://b:1") == "http://b:1"
    assert replicas.pick("http://a:1") is None
    later = time.monotonic() + Replicas.DOWN_S + 0.1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert replicas.pick("http://a:1") == "http://a:1"


def test_a_request_counts_as_outstanding_on_its_replica_until_it_ends():
    """Core.send runs any protocol's call: with one request in flight on a replica the next
    goes to the other, and a request that ends (answered or cancelled) no longer counts."""
    async def scenario():
        core = Core()
        answer = asyncio.Event()
        sent = []

        async def call(url, label):
            sent.append((url, label))
            await answer.wait()
            return label

        first = asyncio.ensure_future(core.send("digits", "a:1 b:1", call, "first"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(core.send("digits", "a:1 b:1", call, "second"))
        await asyncio.sleep(0)
        assert sent == [("a:1", "first"), ("b:1", "second")]
        assert core.replicas.outstanding == {"a:1": 1, "b:1": 1}
        third = asyncio.ensure_future(core.send("digits", "a:1 b:1", call, "third"))
        await asyncio.sleep(0)
        third.cancel()
        await asyncio.gather(third, return_exceptions=True)
        answer.set()
        assert await asyncio.gather(first, second) == ["first", "second"]
        assert core.replicas.outstanding == {"a:1": 0, "b:1": 0}

    asyncio.run(scenario())


def test_an_unreachable_replica_is_skipped_for_the_next_and_none_left_is_a_quick_503():
    async def scenario():
        core = Core()
        tried = []

        async def call(url):
            tried.append(url)
            if url == "a:1":
                raise Unreached("connection refused")
            return url

        assert await core.send("digits", "a:1 b:1", call) == "b:1"
        assert tried == ["a:1", "b:1"]
        # a:1 is now skipped without being tried.
        assert await core.send("digits", "a:1 b:1", call) == "b:1"
        assert tried == ["a:1", "b:1", "b:1"]
        with pytest.raises(GatewayError) as refused:
            await core.send("digits", "a:1", call)
        assert (refused.value.status, refused.value.code, refused.value.retry_after) == (
            503, "server_unavailable", config.RETRY_AFTER_S)
        assert "The inference server of deployment 'digits' is not answering" in refused.value.message
        assert core.replicas.outstanding == {"a:1": 0, "b:1": 0}

    asyncio.run(scenario())
