"""Injected failures: explicit faults and random rules, for tests of retries and error mapping."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FaultMode = Literal["status", "timeout", "drop"]


@dataclass
class Fault:
    """A pending injected failure; ``count`` is how many more requests it will hit."""

    status: int | None
    method: str | None
    path: str | None
    count: int
    mode: FaultMode
    reason: str | None
    message: str | None
    delay: float

    def matches(self, method: str, path: str) -> bool:
        return _matches(self.method, self.path, method, path)


def _matches(want_method: str | None, pattern: str | None, method: str, path: str) -> bool:
    return (want_method is None or want_method.upper() == method) and (
        pattern is None or re.search(pattern, path) is not None
    )


@dataclass(frozen=True)
class FiredFault:
    method: str
    path: str
    mode: FaultMode
    status: int | None
    reason: str | None = None
    message: str | None = None
    delay: float = 0.0


@dataclass
class _RandomFaults:
    rate: float
    rng: random.Random
    statuses: tuple[int, ...]
    modes: tuple[FaultMode, ...]
    method: str | None
    path: str | None
    delay: float


class FaultInjector:
    """Failures to inject. Explicit faults fire first (in order added), then random rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random: list[_RandomFaults] = []
        self.fired: list[FiredFault] = []

    def add(
        self,
        status: int | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        count: int = 1,
        mode: FaultMode = "status",
        reason: str | None = None,
        message: str | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """``status``: answer ``status`` (after ``delay``); ``timeout``: hold the connection for
        ``delay`` s (30 s if 0) then close it unanswered; ``drop``: close it unanswered at once."""
        if mode == "status" and status is None:
            raise ValueError('mode="status" needs a status code')
        if mode not in ("status", "timeout", "drop") or count < 1:
            raise ValueError(f"bad fault: mode={mode!r} count={count}")
        fault = Fault(status, method, path, count, mode, reason, message, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def random(
        self,
        rate: float,
        *,
        seed: int,
        statuses: Sequence[int] = (500, 429),
        modes: Sequence[FaultMode] = ("status", "drop"),
        method: str | None = None,
        path: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Fail about ``rate`` of matching requests, reproducibly for a given ``seed``."""
        if not 0.0 <= rate <= 1.0 or not statuses or not modes:
            raise ValueError("rate must be in [0, 1]; statuses and modes must not be empty")
        rule = _RandomFaults(
            rate, random.Random(seed), tuple(statuses), tuple(modes), method, path, delay
        )
        with self._lock:
            self._random.append(rule)

    def clear(self) -> None:
        """Drop every pending fault and random rule, and forget ``fired``."""
        with self._lock:
            self._faults.clear()
            self._random.clear()
            self.fired.clear()

    @property
    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str) -> FiredFault | None:
        """Consume and return the fault for this request, if any (called by the server)."""
        with self._lock:
            fired: FiredFault | None = None
            for f in self._faults:
                if f.matches(method, path):
                    f.count -= 1
                    if f.count <= 0:
                        self._faults.remove(f)
                    fired = FiredFault(method, path, f.mode, f.status, f.reason, f.message, f.delay)
                    break
            for rule in self._random if fired is None else ():
                if _matches(rule.method, rule.path, method, path) and rule.rng.random() < rule.rate:
                    mode = rule.rng.choice(rule.modes)
                    status = rule.rng.choice(rule.statuses) if mode == "status" else None
                    fired = FiredFault(method, path, mode, status, delay=rule.delay)
                    break
            if fired is not None:
                self.fired.append(fired)
            return fired
