"""How long the fuzz tests search: ``make test`` does not run this folder; CI's fuzz stage and
``scripts/fuzz`` do, a round at a time.

``YIELDOPS_FUZZ_EXAMPLES`` sets the examples per test (a short run by default), and
``YIELDOPS_FUZZ_SEED`` the seed of a round (without it a test draws the same examples every
time, as the rest of the suite does). Nothing is kept on disk: no example database; a
failure prints its seed and a blob to reproduce it with ``@reproduce_failure``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from hypothesis import HealthCheck, seed, settings

EXAMPLES = int(os.environ.get("YIELDOPS_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("YIELDOPS_FUZZ_SEED")


def fuzz(test: Callable) -> Callable:
    """The settings of a fuzz test (apply above ``@given``)."""
    test = settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        derandomize=SEED is None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(test)
    return seed(int(SEED))(test) if SEED is not None else test
