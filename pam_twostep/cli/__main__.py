"""``python -m pam_twostep.cli``: the lab and the tests run the command this way, with
the interpreter they were started with, before (or without) ``twostep`` being installed.
"""

from __future__ import annotations

import sys

from . import main

__all__: list[str] = []

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
