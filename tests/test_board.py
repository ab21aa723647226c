"""The dashboard's aggregation of worker stats records (pure; the live path is in
tests/test_dashboard.py)."""

from schemas.wire import WorkerStats
from streams.serve.board import Board


def rec(wid: str, at: float, events: int, **kw: object) -> bytes:
    return WorkerStats(worker_id=wid, at=at, events=events, lists=events, **kw).to_json()


def test_rates_come_from_successive_records_and_sum_over_workers() -> None:
    b = Board()
    b.apply(rec("a", 100.0, 0))
    b.apply(rec("a", 102.0, 200, lag={"t:0": 5}, latency_p99_ms=40.0))
    b.apply(rec("b", 101.0, 0))
    b.apply(rec("b", 103.0, 100, lag={"t:1": 7}, latency_p99_ms=90.0))
    p = b.tick(now=104.0)
    assert p["workers"] == 2
    assert p["events_per_s"] == 100.0 + 50.0
    assert p["lag"] == 12
    assert p["latency_p99_ms"] == 90.0  # the worst worker's


def test_a_restarted_worker_shows_no_negative_rate_and_an_old_record_changes_nothing() -> None:
    b = Board()
    b.apply(rec("a", 100.0, 0))
    b.apply(rec("a", 101.0, 50))
    b.apply(rec("a", 100.5, 10))  # re-read from the compacted topic: older
    assert b.workers["a"].stats.events == 50
    b.apply(rec("a", 102.0, 3))  # restarted: counters from zero
    assert b.tick(now=102.0)["events_per_s"] == 0.0


def test_live_quality_is_weighted_by_each_workers_window_and_stale_workers_drop_out() -> None:
    b = Board(stale_s=10.0)
    b.apply(rec("a", 100.0, 1, hr10=0.2, ndcg10=0.1, quality_window=300))
    b.apply(rec("b", 100.0, 1, hr10=0.4, ndcg10=0.3, quality_window=100))
    p = b.tick(now=101.0)
    assert abs(p["hr10"] - 0.25) < 1e-12 and abs(p["ndcg10"] - 0.15) < 1e-12
    assert b.tick(now=200.0)["workers"] == 0
    assert b.tick(now=200.0)["hr10"] is None


def test_malformed_records_are_counted_not_raised() -> None:
    b = Board()
    b.apply(b"not json")
    b.apply(b'{"kind":"worker_stats"}')  # no worker id
    b.apply(None)  # a tombstone
    assert b.bad_records == 2 and not b.workers
    assert [p["t"] for p in (b.tick(1.0), b.tick(2.0))] == [1.0, 2.0]
    assert len(b.data()["series"]) == 2
