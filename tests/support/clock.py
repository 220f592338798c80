"""A clock under the test's control, to stand in for a module's ``time``
(``monkeypatch.setattr(module, "time", clock)``): ``monotonic()`` is ``clock.now``, which
only the test moves; ``time()`` is ``clock.now`` too when ``wall`` is set (the JOSE claim
checks, say), and the real wall time otherwise."""

from __future__ import annotations

import time as _time


class Clock:
    def __init__(self, *, wall: bool = False) -> None:
        # Wall-clock based, so that it can serve as wall time as well; whole seconds, as
        # token claims are.
        self.now = float(int(_time.time())) if wall else _time.monotonic()
        self.wall = wall

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now if self.wall else _time.time()
