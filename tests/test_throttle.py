"""The per-address throttle across accounts: memory bounded, windowed, time passed in."""

from __future__ import annotations

from pam_twostep.core.lockout import network_of
from pam_twostep.throttle import SourceThrottle

NOW = 1_800_000_000


def test_network_of_groups_an_ipv6_host_by_its_64() -> None:
    assert (
        network_of("2001:db8:0:1::66")
        == network_of("2001:db8:0:1:ffff::1")
        == ("2001:db8:0:1::/64")
    )
    assert network_of("2001:db8:0:2::66") != network_of("2001:db8:0:1::66")
    assert network_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert network_of("192.0.2.7") == "192.0.2.7"
    assert network_of("mail.example.org") == "mail.example.org"
    assert network_of("") == ""


def test_refused_at_the_limit_until_the_oldest_leaves_the_window() -> None:
    throttle = SourceThrottle()
    for i in range(3):
        assert throttle.until("192.0.2.66", 3, 600, NOW + i) is None
        throttle.failed("192.0.2.66", NOW + i)
    assert throttle.until("192.0.2.66", 3, 600, NOW + 3) == NOW + 600
    assert throttle.until("192.0.2.66", 3, 600, NOW + 600) is None
    assert throttle.until("192.0.2.66", 4, 600, NOW + 3) is None  # a laxer account's limit
    assert throttle.until("198.51.100.7", 3, 600, NOW + 3) is None  # nobody else


def test_the_empty_address_is_never_throttled_across_accounts() -> None:
    throttle = SourceThrottle()
    for i in range(10):
        throttle.failed("", NOW + i)
    assert throttle.until("", 1, 600, NOW + 10) is None
    assert len(throttle) == 0


def test_memory_is_bounded_and_forgets_the_least_recently_failing() -> None:
    throttle = SourceThrottle(capacity=2)
    throttle.failed("192.0.2.1", NOW)
    throttle.failed("192.0.2.2", NOW)
    throttle.failed("192.0.2.1", NOW + 1)  # now the most recent
    throttle.failed("192.0.2.3", NOW + 2)
    assert len(throttle) == 2
    assert throttle.until("192.0.2.1", 2, 600, NOW + 3) is not None
    assert throttle.until("192.0.2.2", 1, 600, NOW + 3) is None  # forgotten
    for i in range(1000):
        throttle.failed("192.0.2.3", NOW + i)
    assert throttle.until("192.0.2.3", 100, 600, NOW + 1000) == NOW + 900 + 600
