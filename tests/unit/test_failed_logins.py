"""Failed logins per client address: a sliding window, the limit told once, memory bounded."""

from __future__ import annotations

from flowstage.api.auth import FailedLogins


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_limited_at_the_limit_until_its_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    failures = FailedLogins(limit=3, window=60, clock=clock)
    told = []
    for _ in range(3):
        assert failures.retry_after("a") is None
        told.append(failures.record("a"))
        clock.now += 10
    assert told == [False, False, True]
    assert failures.retry_after("a") == 30  # the first failure, at 1000, counts until 1060
    assert failures.retry_after("b") is None, "another address is not limited"
    clock.now = 1060
    assert failures.retry_after("a") is None
    assert failures.record("a"), "one more failure within the window limits it again, and says so"
    assert failures.retry_after("a") == 10  # now the one at 1010 is the oldest


def test_becoming_limited_is_told_once_however_many_failures_follow() -> None:
    failures = FailedLogins(limit=2, window=60, clock=Clock())
    assert [failures.record("a") for _ in range(5)] == [False, True, False, False, False]


def test_the_addresses_kept_are_bounded_and_the_least_recently_failed_is_forgotten() -> None:
    failures = FailedLogins(limit=1, window=60, clients=2, clock=Clock())
    for address in ("a", "b", "a", "c"):
        failures.record(address)
    assert failures.retry_after("b") is None, "forgotten"
    assert failures.retry_after("a") is not None
    assert failures.retry_after("c") is not None
