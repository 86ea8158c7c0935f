"""Background loops: a thread that can be woken early and stopped."""

from __future__ import annotations

import threading


class BackgroundLoop:
    """Base for objects that run ``run()`` in a daemon thread until :meth:`stop`.

    ``run`` waits on ``self._wake`` between rounds; :meth:`notify` cuts the wait short.
    """

    thread_name = "litecluster"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def notify(self) -> None:
        """Wake the loop now instead of at the end of its wait."""
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
