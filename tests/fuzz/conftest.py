"""Bounded fuzzing of the parsers that face untrusted bytes.

Each target is run three ways: every file of its corpus (``corpus/<target>/``: past
crashers and edge cases, replayed on every run), Hypothesis mutations of real inputs
(the files in ../shared/data/real and the corpus, flipped, cut, spliced and repeated at
the byte level), and structured generation aimed at the edges. The oracle is the same
everywhere: a parser returns a value or raises an :class:`~exchange.errors.ExchangeError`
that says what was wrong; any other exception is a defect.

The budget is bounded so ``make test`` stays short: ``CX_FUZZ_EXAMPLES`` examples per
Hypothesis test (default 150). A longer hunt: ``CX_FUZZ_EXAMPLES=20000 .venv/bin/pytest
tests/fuzz -x``. When one fails, save the shrunk input Hypothesis prints under
``corpus/<target>/`` with a name that says what it is, and fix the parser.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "cx-fuzz",
    max_examples=int(os.environ.get("CX_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
    database=None,  # the corpus directory, not Hypothesis's cache, keeps what matters
)
