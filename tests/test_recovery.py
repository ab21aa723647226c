"""Crash recovery on the real broker: SIGKILLed workers, and a broker that restarts mid-stream.

A worker is killed with SIGKILL at several points of a replay and started again; at the end no
accepted event lacks its list, none is counted twice (per-user counts in the users table, item
totals of the ``item-deltas`` topic), and the evaluation equals the uninterrupted run's.

Every topic has one partition here, so every run handles the events in one order: the engine
is deterministic for a given order, which is what makes "equal" an exact comparison (with
several partitions the interleaving, and so the last bits of the item state, vary from run to
run even without a crash).

The workers here search a user's candidates afresh on every event
(``VIDREC_ENGINE_CANDIDATE_REFRESH_EVENTS=1``). By default a user's candidate sets are reused
for a few events, and that cache is not in the user's snapshot: after a restart a user's next
few lists are ranked from freshly searched candidates, so they may differ from the
uninterrupted run's (the item state and every count still equal it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas import Recommendations, UserEvent, VideoPublished
from schemas.wire import decode_item_deltas, decode_user_value
from streams.wire.clients import Sender, consume, make_producer, subscribe
from streams.wire.eventlog import write_log
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics, TopicSettings, create_topics, delete_prefix
from streams.worker.process import WorkerProcess, wait_until_serving

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "infra" / "kafka" / "kafka.sh"


def _log() -> list[Any]:
    """A small generated log (~480 events), its catalogue first so that every video is indexed
    before any event: otherwise when a video lands in a worker's catalogue depends on timing."""
    from streams.sample.generator import generate

    log = list(generate(7, videos=120, users=30, days=2))
    return [m for m in log if isinstance(m, VideoPublished)] + [
        m for m in log if not isinstance(m, VideoPublished)
    ]


def _topics(prefix: str) -> Topics:
    return Topics(TopicSettings(prefix=prefix, partitions=1, internal_partitions=1))


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def worker_counts(w: WorkerProcess) -> dict[str, int]:
    """The counters of the worker's latest status line (``VIDREC_WORKER_STATUS_INTERVAL_S``)."""
    for line in reversed(list(w.lines)):
        if "videos_replicated=" in line:
            pairs = (p.split("=", 1) for p in line.split() if "=" in p)
            return {k: int(v) for k, v in pairs if v.isdigit()}
    return {}


class Deployment:
    """One topic prefix with its worker processes, on one broker; every worker is stopped."""

    def __init__(self, kafka: KafkaSettings, tmp: Path, prefix: str | None = None) -> None:
        self.kafka = kafka
        self.tmp = tmp
        self.prefix = prefix or f"t-{uuid.uuid4().hex[:10]}"
        self.topics = _topics(self.prefix)
        self.workers: list[WorkerProcess] = []
        create_topics(kafka, self.topics)

    def start_worker(self, extra: dict[str, str | None] | None = None) -> WorkerProcess:
        n = len(self.workers)
        env: dict[str, str | None] = {
            "VIDREC_TOPIC_PREFIX": self.prefix,
            "VIDREC_TOPIC_PARTITIONS": "1",
            "VIDREC_TOPIC_INTERNAL_PARTITIONS": "1",
            "VIDREC_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "VIDREC_ENCODER_MODEL_PATH": "hashing",
            "VIDREC_WORKER_STATUS_INTERVAL_S": "0.5",
            "VIDREC_WORKER_SESSION_TIMEOUT_S": "6",
            # candidates searched afresh on every event: the reused ones are a cache that a
            # restarted worker starts without (see the module docstring)
            "VIDREC_ENGINE_CANDIDATE_REFRESH_EVENTS": "1",
            # one event per ranking: a micro-batch's content search and fusion rows depend on
            # which events arrived together, which is timing, so two runs would differ anyway
            "VIDREC_WORKER_EVENT_BATCH": "1",
            "VIDREC_QDRANT_PATH": str(self.tmp / f"{self.prefix}-q{n}"),
            "QDRANT_URL": None,
            **(extra or {}),
        }
        w = WorkerProcess(f"{self.prefix}-w{n}", env=env)
        self.workers.append(w)
        wait_until_serving([w], 1, timeout_s=240)
        return w

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def table(self) -> dict[str, dict[str, Any]]:
        """The users table as its changelog holds it (latest snapshot per user)."""
        latest: dict[str, dict[str, Any]] = {}
        topic = f"{self.topics.app_id}-users-changelog"
        for r in consume(self.kafka, topic, from_beginning=True, timeout_s=5.0):
            if r.key is not None and r.value is not None:
                latest[r.key.decode()] = decode_user_value(r.value)[0]
        return latest

    def item_deltas(self) -> tuple[Counter, dict[tuple[str, str], Any]]:
        """How often each (user, event id) reached ``item-deltas``, and its deltas."""
        seen: Counter = Counter()
        deltas: dict[tuple[str, str], Any] = {}
        for r in consume(self.kafka, self.topics.item_deltas, from_beginning=True, timeout_s=5.0):
            _, user_id, event_id, d = decode_item_deltas(r.value)
            k = (user_id, event_id)
            seen[k] += 1
            deltas.setdefault(k, d.to_dict())
        return seen, deltas


def replay(
    dep: Deployment,
    log: list[Any],
    *,
    rate: float,
    on_lists: Callable[[int], None] | None = None,
    timeout_s: float = 180.0,
) -> list[Recommendations]:
    """Send the catalogue, wait until it is indexed, send the events at ``rate`` per second
    from a thread, and collect lists until every event has one; returns every list received.

    ``on_lists(n)`` runs in the collecting thread after each new trigger (n distinct so far).
    """
    videos = [m for m in log if isinstance(m, VideoPublished)]
    events = [m for m in log if isinstance(m, UserEvent)]
    sender = Sender(make_producer(dep.kafka), dep.topics)
    for v in videos:
        sender.send(v)
    sender.flush()
    _wait(
        lambda: worker_counts(dep.workers[-1]).get("videos_replicated", 0) >= len(videos),
        120,
        "the catalogue to be indexed",
    )
    stop = threading.Event()

    def produce() -> None:
        for e in events:
            if stop.is_set():
                break
            sender.send(e)
            time.sleep(1.0 / rate)
        sender.flush()

    producer = threading.Thread(target=produce, daemon=True)
    got: list[Recommendations] = []
    triggers: set[str] = set()
    try:
        for r in subscribe(
            dep.kafka,
            dep.topics,
            from_beginning=True,
            timeout_s=timeout_s,
            on_ready=producer.start,
        ):
            got.append(r.recs)
            t = r.recs.trigger_event_id
            if t not in triggers:
                triggers.add(t)
                if on_lists is not None:
                    on_lists(len(triggers))
            if len(triggers) >= len(events):
                break
    finally:
        stop.set()
        producer.join(timeout=60)
        sender.close()
    return got


def state_of(dep: Deployment, lists: list[Recommendations], log: list[Any]) -> dict[str, Any]:
    """What a run leaves behind, in comparable form."""
    table = dep.table()
    shipped, deltas = dep.item_deltas()
    pop: dict[str, float] = defaultdict(float)
    cooc: dict[str, float] = defaultdict(float)
    for d in deltas.values():
        for vid, amount, _ in d["popularity"]:
            pop[vid] += amount
        for a, _, amount, _ in d["cooc"]:
            cooc[a] += amount
    return {
        "user_events": {u: s["user"]["events"] for u, s in table.items()},
        "dedup": {u: len(s["user"]["dedup"]) for u, s in table.items()},
        "ledger": {u: s["user"]["ledger"]["items"] for u, s in table.items()},
        "shipped": shipped,
        "deltas": deltas,
        "popularity": {k: round(v, 9) for k, v in pop.items()},
        "cooc": {k: round(v, 9) for k, v in cooc.items()},
        "first_lists": _first_lists(lists),
    }


def _first_lists(lists: list[Recommendations]) -> dict[str, list[str]]:
    first: dict[str, list[str]] = {}
    for r in lists:
        if r.trigger_event_id is not None:
            first.setdefault(r.trigger_event_id, [it.video_id for it in r.items])
    return first


def evaluate(tmp: Path, name: str, log: list[Any], lists: list[Recommendations]) -> dict:
    from streams.cli.evaluate import evaluate_files

    write_log(tmp / "log.jsonl", log)
    write_log(tmp / f"{name}.jsonl", lists)
    return evaluate_files(str(tmp / "log.jsonl"), str(tmp / f"{name}.jsonl"))


def _assert_nothing_lost_or_doubled(state: dict[str, Any], log: list[Any]) -> None:
    events = [m for m in log if isinstance(m, UserEvent)]
    per_user = Counter(e.user_id for e in events)
    assert set(state["first_lists"]) == {e.event_id for e in events}, "an event has no list"
    assert state["user_events"] == dict(per_user), "a user's event count is off"
    assert state["dedup"] == dict(per_user)


# Known intermittent loss (2 of 4 and 2 of 8 runs in earlier sessions lost the lists of the
# last ~55 events after the third SIGKILL, with channel sends and with direct producer sends
# alike). Fixed since (issue 14): outputs resent for a duplicate were left out of the snapshot
# that a later event of the same user in the same micro-batch wrote, so a second crash before
# their delivery lost those lists for good (test_agents reproduces it). Also: faust's producer
# flush could return with the snapshots' changelog records still in its buffer, so outputs
# and offsets could overtake the snapshots (the agent now awaits those records). Whether that
# was all of it is not proven: kept non-strict until repeated runs confirm. Issue 15: the
# workers here rank one event at a time (micro-batches made the lists and fusion rows depend on
# timing, so the test failed 4 of 4 after issue 14); since then 3 of 3 runs passed, under load.
@pytest.mark.xfail(strict=False, reason="intermittent: tail lists lost after the third SIGKILL")
def test_sigkilled_worker_loses_nothing_and_evaluates_like_an_uninterrupted_run(
    kafka_settings, tmp_path
):
    log = _log()
    n_events = sum(isinstance(m, UserEvent) for m in log)
    rate = 150.0

    base = Deployment(kafka_settings, tmp_path)
    try:
        base.start_worker()
        lists = replay(base, log, rate=rate)
        base.stop()
        expected = state_of(base, lists, log)
    finally:
        base.stop()
        delete_prefix(kafka_settings, base.prefix)
    _assert_nothing_lost_or_doubled(expected, log)
    eval_base = evaluate(tmp_path, "base", log, lists)

    crash = Deployment(kafka_settings, tmp_path)
    kill_at = [n_events // 5, n_events // 2, (4 * n_events) // 5]
    kills: list[tuple[int, dict[str, int]]] = []

    def kill_and_restart(n: int) -> None:
        if kill_at and n >= kill_at[0]:
            kill_at.pop(0)
            w = crash.workers[-1]
            counts = worker_counts(w)
            w.proc.kill()  # SIGKILL: no commit, no flush, no leaving the group
            w.proc.wait()
            kills.append((n, counts))
            crash.start_worker()

    try:
        crash.start_worker()
        try:
            got = replay(crash, log, rate=rate, on_lists=kill_and_restart, timeout_s=240)
        finally:
            for w in crash.workers:  # what each worker said last (read on a failure)
                print(f"--- {w.name} (exit {w.proc.poll()})\n" + "\n".join(w.lines[-25:]))
        resent = worker_counts(crash.workers[-1])
        crash.stop()
        state = state_of(crash, got, log)
    finally:
        crash.stop()
        delete_prefix(kafka_settings, crash.prefix)
    eval_crash = evaluate(tmp_path, "crash", log, got)

    print(
        f"\n{n_events} events; killed at {[n for n, _ in kills]} lists; "
        f"lists received {len(got)} (uninterrupted {len(lists)}); "
        f"deltas records {sum(state['shipped'].values())} for {len(state['shipped'])} events; "
        f"last worker {resent}\nHR@10 {eval_base['hr@10']:.4f} vs {eval_crash['hr@10']:.4f}"
    )
    assert len(kills) == 3
    _assert_nothing_lost_or_doubled(state, log)
    # the same events shipped item deltas, with the same deltas: item state is the same
    assert set(state["shipped"]) == set(expected["shipped"])
    assert state["popularity"] == expected["popularity"]
    assert state["cooc"] == expected["cooc"]
    assert state["deltas"] == expected["deltas"]
    assert state["ledger"] == expected["ledger"]
    # every event's first list is the uninterrupted run's list, so the evaluation is equal
    assert state["first_lists"] == expected["first_lists"]
    assert eval_crash == eval_base


# -- a broker that restarts in the middle -----------------------------------------------------
def _free_port_pair() -> int:
    """A port p with p and p + 1 (the controller's) both free."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no free pair of ports")


@pytest.fixture
def own_broker(tmp_path) -> Iterator[Callable[[str], None]]:
    """A second broker of this test alone (own port and run folder), driven by kafka.sh."""
    required = os.environ.get("VIDREC_REQUIRE_KAFKA", "").strip().lower() in ("1", "true", "yes")
    if not (ROOT / "infra" / "kafka" / ".cache" / "libs" / ".complete").exists() and not required:
        pytest.skip("the Kafka jars are not cached (run 'vidrec kafka up' once)")
    port = _free_port_pair()
    env = {
        **os.environ,
        "VIDREC_KAFKA_PORT": str(port),
        "VIDREC_KAFKA_DIR": str(tmp_path / "kafka"),
        "VIDREC_KAFKA_WAIT_S": "180",
    }

    def run(cmd: str) -> None:
        subprocess.run(["bash", str(KAFKA_SH), cmd], env=env, check=True, timeout=240)

    run("up")
    run.port = port  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        run("down")


def test_workers_ride_out_a_broker_restart_without_loss(own_broker, tmp_path):
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{own_broker.port}")
    log = _log()
    events = [m for m in log if isinstance(m, UserEvent)]
    dep = Deployment(kafka, tmp_path)
    restarted: list[int] = []

    def restart_broker(n: int) -> None:
        if not restarted and n >= len(events) // 3:
            restarted.append(n)
            own_broker("down")
            time.sleep(2)
            own_broker("up")

    base = Deployment(kafka, tmp_path)
    try:
        base.start_worker()
        lists = replay(base, log, rate=100.0)
        base.stop()
        expected = state_of(base, lists, log)
    finally:
        base.stop()
    eval_base = evaluate(tmp_path, "base", log, lists)
    try:
        dep.start_worker()
        got = replay(dep, log, rate=100.0, on_lists=restart_broker, timeout_s=240)
        alive = dep.workers[-1].alive()
        dep.stop()
        state = state_of(dep, got, log)
    finally:
        dep.stop()
    eval_restart = evaluate(tmp_path, "restart", log, got)
    print(
        f"\nbroker restarted after {restarted} lists; {len(got)} lists for {len(events)} events; "
        f"item deltas for {len(state['shipped'])} events; "
        f"HR@10 {eval_base['hr@10']:.4f} uninterrupted vs {eval_restart['hr@10']:.4f}"
    )
    assert restarted and alive, "the worker died with the broker"
    _assert_nothing_lost_or_doubled(state, log)
    assert all(n == 1 or n == 2 for n in state["shipped"].values())
    # every event is learned once, with the same user-side effects as without the restart
    assert state["user_events"] == expected["user_events"]
    assert state["popularity"] == expected["popularity"]
    assert state["cooc"] == expected["cooc"]
    # Lists: while the broker is away, videos and events pile up in the producer and arrive
    # in a burst, so a list may be ranked before a video produced just ahead of its event is
    # indexed (which an uninterrupted run at 100/s never sees): close, not bit-equal.
    assert abs(eval_restart["hr@10"] - eval_base["hr@10"]) <= 0.03
