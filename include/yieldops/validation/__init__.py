"""Data validation of one decoded STDF file with Great Expectations.

>>> from yieldops.validation import validate_tables
>>> report = validate_tables(read_tables(path), product, docs_dir="docs/")  # doctest: +SKIP
>>> report.success, report.failures, report.docs_page  # doctest: +SKIP

The frames validated are in ``frames``, the rules and their expectations in
``suites``, the Data Docs site in ``docs``. Importing this package imports
Great Expectations (several seconds): import it inside task callables.
"""

from ..quiet import quiet_great_expectations

quiet_great_expectations()  # before the modules below import Great Expectations

from .run import ValidationReport, validate_tables  # noqa: E402
from .suites import expectation_suites  # noqa: E402

__all__ = ["ValidationReport", "expectation_suites", "validate_tables"]
