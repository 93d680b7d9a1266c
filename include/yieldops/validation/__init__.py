"""Data validation of one decoded STDF file with Great Expectations.

>>> from yieldops.validation import validate_tables
>>> report = validate_tables(read_tables(path), product, docs_dir="docs/")  # doctest: +SKIP
>>> report.success, report.failures, report.docs_page  # doctest: +SKIP

The frames validated are in ``frames``, the rules and their expectations in
``suites``, the Data Docs site in ``docs``. Importing this package imports
Great Expectations (several seconds): import it inside task callables.
"""

from .run import ValidationReport, validate_tables
from .suites import expectation_suites

__all__ = ["ValidationReport", "expectation_suites", "validate_tables"]
