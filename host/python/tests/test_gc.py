"""Releases: a collected proxy releases its remote object, in batches
(after RPyC's test_refcount and Pushy's GC tests)."""

from __future__ import annotations

import gc
import time

import pytest

import pushy


def table_size(con) -> int:
    con.flush_releases()
    return con._core.table_size()


def test_a_dropped_proxy_releases_its_object(con):
    baseline = table_size(con)
    remote = con.eval("object()")
    assert table_size(con) == baseline + 1
    del remote
    gc.collect()
    assert table_size(con) == baseline


def test_releases_are_batched_and_ride_on_the_next_call(con):
    con.gc_interval = 3600
    baseline = table_size(con)
    remote = con.eval("[]")
    del remote
    # Not sent yet... until the next request carries it.
    assert con._core.table_size() == baseline


def test_the_gc_interval_sends_releases(con):
    assert con.gc_interval == 5.0
    con.gc_interval = 0.05
    baseline = table_size(con)
    objects = [con.eval("object()") for _ in range(5)]
    assert con._core.table_size() == baseline + 5
    del objects
    time.sleep(0.3)
    # The timer sent them; this call only reads the count.
    assert con._core.table_size() == baseline


def test_gc_disabled_holds_releases(con):
    baseline = table_size(con)
    con.gc_enabled = False
    remote = [con.eval("object()") for _ in range(3)]
    del remote
    gc.collect()
    assert table_size(con) == baseline + 3
    con.gc_enabled = True
    assert table_size(con) == baseline


def test_dropping_10000_proxies_at_once_is_prompt(con):
    baseline = table_size(con)
    objects = con.eval("[object() for _ in range(10000)]")
    proxies = list(objects)
    assert len(proxies) == 10000 and table_size(con) == baseline + 10001
    started = time.perf_counter()
    del proxies, objects
    gc.collect()
    assert table_size(con) == baseline
    assert time.perf_counter() - started < 5.0


def test_a_proxy_given_back_stays_alive(con):
    con.execute("keep = {}")
    thing = con.eval("object()")
    con.eval("keep").__setitem__("x", thing)
    del thing
    gc.collect()
    table_size(con)  # the release went out
    assert con.eval("type(keep['x']).__name__") == "object"


def test_live_proxies_are_counted(con):
    before = con._core.live_proxies()
    remote = con.eval("[]")
    assert con._core.live_proxies() == before + 1
    del remote
    assert con._core.live_proxies() == before


def test_proxies_keep_working_after_the_connection_object_is_dropped(target, daemon):
    options = {"token_file": daemon.token_file} if target.startswith("daemon:") else {}
    remote = pushy.connect(target, **options).modules.os.path
    gc.collect()
    assert remote.join("a", "b") == "a/b"


def test_an_unclosed_connection_ends_when_dropped(target, daemon):
    import weakref

    options = {"token_file": daemon.token_file} if target.startswith("daemon:") else {}
    con = pushy.connect(target, **options)
    assert con.modules.os.getpid() > 0
    core = weakref.ref(con._core.companion)
    del con
    gc.collect()
    # Nothing holds the session any more (its state is freed).
    assert core() is None


def test_a_huge_gc_interval_is_a_value_error_not_a_panic(con):
    with pytest.raises(ValueError, match="a year"):
        con.gc_interval = 1e20
    with pytest.raises(ValueError, match="a year"):
        pushy.connect("embedded:", gc_interval=1e300)
    con.gc_interval = 2.5
    assert con.gc_interval == 2.5
