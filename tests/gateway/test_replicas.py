"""Replica choice in the gateway: fewest outstanding requests from this process, and a
server that refused a connection skipped for a while."""
import time

from gateway.app import Replicas


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
