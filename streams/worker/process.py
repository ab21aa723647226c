"""Worker subprocesses: start ``vidrec worker`` (or another program) and wait for its partitions;
``ensure_broker`` starts the local broker when none answers.

``vidrec up``, ``vidrec soak`` and ``vidrec bench``'s streaming section all run workers this way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from streams.wire.broker import run_script, wait_for_broker
from streams.wire.settings import KafkaSettings

SERVING = re.compile(r"serving \S+ partitions \[([0-9, ]*)\]")


class WorkerProcess:
    """A ``vidrec worker`` subprocess whose stderr is echoed and watched for its assignment.

    ``command`` runs another Python program the same way (the benchmark's passthrough).
    """

    def __init__(
        self,
        name: str,
        env: dict[str, str | None] | None = None,
        echo: Callable[[str], None] | None = None,
        args: list[str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.name = name
        self.partitions: set[int] = set()
        self.lines: list[str] = []
        self._echo = echo
        self._changed = threading.Condition()
        cmd = command or [sys.executable, "-m", "streams.cli", "worker", *(args or [])]
        full_env = dict(os.environ)
        for k, v in (env or {}).items():  # None unsets a variable
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        self.proc = subprocess.Popen(
            cmd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            with self._changed:
                self.lines.append(line)
                if len(self.lines) > 2000:
                    del self.lines[:1000]
                m = SERVING.search(line)
                if m:
                    self.partitions = {int(p) for p in m.group(1).split(",") if p.strip()}
                self._changed.notify_all()
            if self._echo is not None:
                self._echo(f"[{self.name}] {line}")
        with self._changed:
            self._changed.notify_all()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM (faust stops gracefully, committing offsets), then SIGKILL after a grace."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


def wait_until_serving(
    workers: list[WorkerProcess], partitions: int, timeout_s: float = 180.0
) -> None:
    """Block until the workers' latest assignments cover every partition, each exactly once.

    Raises
    ------
    RuntimeError
        When a worker exits or the deadline passes; the message holds the worker's last lines.
    """
    deadline = time.monotonic() + timeout_s
    want = set(range(partitions))
    while True:
        sets = [w.partitions for w in workers]
        union: set[int] = set().union(*sets)
        if union == want and sum(len(s) for s in sets) == partitions and all(sets):
            return
        for w in workers:
            if not w.alive():
                tail = "\n".join(w.lines[-30:])
                raise RuntimeError(f"{w.name} exited with {w.proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {w.name}\n" + "\n".join(w.lines[-15:]) for w in workers)
            raise RuntimeError(f"workers did not take all {partitions} partitions:\n{tails}")
        time.sleep(0.2)


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _broker_is_local(kafka: KafkaSettings) -> bool:
    return all(s.rsplit(":", 1)[0].strip("[]") in LOCAL_HOSTS for s in kafka.servers)


def ensure_broker(kafka: KafkaSettings) -> bool:
    """Make sure a broker answers; returns True when this call started the local one."""
    try:
        wait_for_broker(kafka.bootstrap_servers, timeout_s=3.0, settings=kafka)
        return False
    except TimeoutError:
        if not _broker_is_local(kafka):
            raise
    port = int(kafka.servers[0].rsplit(":", 1)[1])
    print(f"vidrec up: starting the local Kafka broker on port {port} ...", file=sys.stderr)
    if run_script("up", port=port) != 0:
        raise RuntimeError("the local broker did not start (see infra/kafka/run/logs)")
    wait_for_broker(kafka.bootstrap_servers, timeout_s=60.0, settings=kafka)
    return True
