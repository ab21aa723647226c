"""The live dashboard in a real browser: Debian's headless Chromium (driven by selenium through
Debian's chromedriver) opens ``vidrec serve``'s page while a real worker on the local broker
learns from the shipped sample, and the page must fill with live figures.

The screenshot goes to the test's tmp dir, and also to ``$VIDREC_SCREENSHOT_DIR`` when set (how
``docs/dashboard.png`` was made). Without Chromium the test skips, unless
``VIDREC_REQUIRE_BROWSER=1`` (CI installs it and sets that): then a missing browser fails.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_serve import ServerProcess

from schemas import UserEvent, VideoPublished
from streams.sample import default_sample_path
from streams.wire.eventlog import read_log

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
RATE = 80.0  # sample messages per second while the page is open (a worker keeps up)
MAX_MESSAGES = 8000  # the replay is bounded in count as well as in time
PARTITIONS = 2


def _browser() -> Any:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        why = (
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("VIDREC_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1150"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


class Replay(threading.Thread):
    """The shipped sample onto the broker: the first videos at once, then the stream (videos
    arriving among the events, as on a platform) at ``RATE`` messages per second."""

    def __init__(self, kafka: Any, topics: Any) -> None:
        super().__init__(daemon=True)
        from streams.wire.clients import Sender, make_producer

        self.sender = Sender(make_producer(kafka), topics)
        msgs = (
            m for m in read_log(default_sample_path()) if isinstance(m, VideoPublished | UserEvent)
        )
        self.msgs = list(itertools.islice(msgs, MAX_MESSAGES))
        self.first = next(i for i, m in enumerate(self.msgs) if isinstance(m, UserEvent))
        self.users = [m.user_id for m in self.msgs if isinstance(m, UserEvent)]
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        for m in self.msgs[: self.first]:
            self.sender.send(m)
        self.sender.flush()
        t0 = time.monotonic()
        for n, m in enumerate(self.msgs[self.first :]):
            if self.stop.is_set():
                break
            wait = t0 + n / RATE - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.sender.send(m)
            self.sent = n + 1
            if n % 50 == 0:
                self.sender.flush()
        self.sender.flush()


@pytest.fixture
def deployment(kafka_bootstrap) -> Iterator[dict[str, Any]]:
    from streams.wire.settings import KafkaSettings
    from streams.wire.topics import Topics, TopicSettings, create_topics, delete_prefix
    from streams.worker.process import WorkerProcess, wait_until_serving

    kafka = KafkaSettings()
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    topics = Topics(TopicSettings(prefix=prefix, partitions=PARTITIONS,
                                  internal_partitions=PARTITIONS))  # fmt: skip
    create_topics(kafka, topics)
    env = {
        "VIDREC_TOPIC_PREFIX": prefix,
        "VIDREC_TOPIC_PARTITIONS": str(PARTITIONS),
        "VIDREC_TOPIC_INTERNAL_PARTITIONS": str(PARTITIONS),
        "VIDREC_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
    }
    worker = WorkerProcess(
        f"{prefix}-w",
        env={
            **env,
            "VIDREC_ENCODER_MODEL_PATH": "hashing",
            "VIDREC_WORKER_STATUS_INTERVAL_S": "0",
            "VIDREC_WORKER_STATS_INTERVAL_S": "0.5",
            "VIDREC_QDRANT_PATH": None,
            "QDRANT_URL": None,
        },  # fmt: skip
    )
    server = ServerProcess(env)
    replay = Replay(kafka, topics)
    try:
        wait_until_serving([worker], PARTITIONS)
        replay.start()
        yield {"server": server, "worker": worker, "replay": replay}
    finally:
        replay.stop.set()
        replay.join(timeout=30)
        replay.sender.close()
        server.stop()
        worker.stop()
        delete_prefix(kafka, prefix)


def _user_with_a_list(url: str, users: list[str]) -> str:
    """A user the API holds a published list for (the worker may still be behind the replay)."""
    import httpx

    for user in dict.fromkeys(users):
        r = httpx.get(f"{url}/users/{user}/recommendations", params={"k": 3})
        if r.status_code == 200 and r.json()["source"] == "list":
            return user
    raise AssertionError("no user has a list yet")


def _wait(driver: Any, script: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = driver.execute_script(script)
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"the page never had: {script}")


@pytest.mark.kafka
@pytest.mark.slow
def test_the_dashboard_fills_with_live_figures_in_headless_chromium(deployment, tmp_path):
    from selenium.webdriver.common.by import By

    server, replay = deployment["server"], deployment["replay"]
    driver = _browser()
    try:
        t0 = time.monotonic()
        driver.get(server.url + "/")
        # the first poll of /dashboard/data answered and was drawn
        _wait(driver, "return window.vidrecDash && window.vidrecDash.polls > 0", 20)
        first_figures_s = time.monotonic() - t0
        nav = driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "return {load: n.loadEventEnd, dom: n.domContentLoadedEventEnd};"
        )
        # live data: the workers' stats reach the charts, events flow, live quality is measured
        _wait(
            driver,
            "const s = (window.vidrecDash.last || {}).series || [];"
            "return s.filter(p => p.events_per_s > 0).length >= 3"
            " && s.some(p => p.hr10 !== null) && s.some(p => p.latency_p99_ms !== null);",
            90,
        )
        dash = driver.execute_script("return window.vidrecDash.last")
        throughput = driver.execute_script(
            "return window.vidrecDash.charts['c-throughput'].data[1].filter(v => v > 0).length"
        )
        assert throughput >= 3, "the throughput chart holds the live points"
        quality = driver.execute_script(
            "return window.vidrecDash.charts['c-quality'].data[1].filter(v => v !== null).length"
        )
        assert quality >= 1
        for tile in ("t-events", "t-p50", "t-p99", "t-hr"):
            assert driver.find_element(By.ID, tile).text not in ("", "–"), tile
        assert dash["server"]["videos"] > 0 and dash["server"]["users"] > 0
        assert dash["workers"] and dash["workers"][0]["events"] > 0
        # trending, named by title
        rows = driver.find_elements(By.CSS_SELECTOR, "#trending tbody tr")
        assert len(rows) >= 5 and "no events yet" not in rows[0].text
        # an unknown user gets trending, marked as such
        driver.find_element(By.ID, "user").send_keys("nobody-" + uuid.uuid4().hex[:6])
        driver.find_element(By.ID, "go").click()
        _wait(
            driver,
            "return document.getElementById('listinfo').textContent.includes('trending')",
            10,
        )
        # the user lookup shows a list with its reasons and source scores
        user = _user_with_a_list(server.url, replay.users[: replay.sent])
        box = driver.find_element(By.ID, "user")
        box.clear()
        box.send_keys(user)
        driver.find_element(By.ID, "go").click()
        _wait(driver, f"return document.getElementById('list').dataset.user === {user!r}", 10)
        first = driver.find_elements(By.CSS_SELECTOR, "#list tbody tr")[0].text
        assert f"{user}'s latest list" in driver.find_element(By.ID, "listinfo").text
        reasons = ("because you watched", "new in", "more from", "trending")
        assert any(w in first for w in reasons), first
        assert "cooc" in first and "content" in first  # the source scores
        time.sleep(1.5)  # one more poll, so the screenshot shows the newest points
        shot = tmp_path / "dashboard.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        if os.environ.get("VIDREC_SCREENSHOT_DIR"):
            shutil.copy(shot, Path(os.environ["VIDREC_SCREENSHOT_DIR"]) / "dashboard.png")
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not severe, severe
        print(
            f"\ndashboard: DOM ready {nav['dom']:.0f} ms, load {nav['load']:.0f} ms, first live "
            f"figures {first_figures_s * 1000:.0f} ms; {len(dash['series'])} points; "
            f"{replay.sent} messages replayed; screenshot {shot}"
        )
    finally:
        driver.quit()
