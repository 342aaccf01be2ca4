"""What every fuzz target shares: unexpected errors logged by the code under test are
findings too (the product turns them into temporary failures, which hides them)."""

from __future__ import annotations

import logging


class Alarm(logging.Handler):
    """Remembers any ERROR record: an ``except Exception`` path that should not be reached."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def check(self) -> None:
        if self.records:
            record = self.records[0]
            self.records.clear()
            raise AssertionError(f"logged as unexpected: {record.getMessage()}")


def install_alarm() -> Alarm:
    alarm = Alarm()
    root = logging.getLogger()
    root.addHandler(alarm)
    root.setLevel(logging.WARNING)  # formatting below that only costs time
    logging.lastResort = None
    return alarm
