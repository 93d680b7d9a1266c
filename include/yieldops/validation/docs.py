"""Great Expectations Data Docs of validation runs, in one local site shared by every process.

Layout of ``docs_dir``:

- ``index.html``, ``validations/<product>/<frame>/<run name>/<run time>/...``,
  ``static/``: the GX site; every run keeps its own pages;
- ``runs/<run name>/<run time>.html``: one page per run linking its GX pages
  (a run validates several frames, GX renders one page per frame);
- ``.gx/validations/``: the validation results the site is rendered from;
- ``.lock``: held while a process adds to the site.

Each Airflow task is a new process with its own in-memory GX context, so the
site cannot be kept in memory: when GX rebuilds the index it deletes every page
whose result is not in its results store. The results therefore live on disk
beside the site, and writing them and rebuilding the site happen under an
exclusive file lock, so concurrent tasks neither lose each other's pages nor
write the index at the same time.
"""

from __future__ import annotations

import fcntl
import html
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import great_expectations as gx
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.data_context import AbstractDataContext
from great_expectations.data_context.store import ValidationResultsStore
from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier

from .context import ephemeral_context

SITE = "yieldops"
RESULTS_DIR = Path(".gx") / "validations"
# The index lists the newest results only: GX reads every listed result on each rebuild.
INDEX_LIMIT = 500


def publish(validations: ValidationResultsStore, docs_dir: Path, run_id: gx.RunIdentifier) -> Path:
    """Add the validation results of a run to the site at ``docs_dir``; the run's page."""
    docs_dir = docs_dir.resolve()  # GX would resolve a relative site against its own root
    docs_dir.mkdir(parents=True, exist_ok=True)
    context = _site_context(docs_dir)
    results = _stored_results(validations)
    with _exclusive(docs_dir / ".lock"):
        for key, result in results.items():
            context.validation_results_store.set(key, result)
        context.build_data_docs(site_names=[SITE], resource_identifiers=list(results))
    pages = {key: _page(context, key) for key in results}
    return _write_run_page(docs_dir, run_id, results, pages)


def _stored_results(
    validations: ValidationResultsStore,
) -> dict[ValidationResultIdentifier, ExpectationSuiteValidationResult]:
    """Every result in the store by its key (GX types a store's keys and values loosely)."""
    results = {}
    for key in validations.list_keys():
        result = validations.get(key)
        if not isinstance(key, ValidationResultIdentifier) or result is None:
            raise TypeError(f"not a validation result in the results store: {key}")
        results[key] = result
    return results


def _site_context(docs_dir: Path) -> AbstractDataContext:
    site = {
        "class_name": "SiteBuilder",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir),
        },
        "show_how_to_buttons": False,
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "validation_results_limit": INDEX_LIMIT,
        },
        # Suites are code, rebuilt per file: each validation page shows its own.
        "site_section_builders": {"expectations": "None", "profiling": "None"},
    }
    return ephemeral_context(results_dir=docs_dir / RESULTS_DIR, docs_sites={SITE: site})


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _page(context: AbstractDataContext, key: ValidationResultIdentifier) -> Path:
    (site,) = context.get_docs_sites_urls(resource_identifier=key, site_names=[SITE])
    return Path(unquote(urlparse(site["site_url"]).path))


def _write_run_page(
    docs_dir: Path,
    run_id: gx.RunIdentifier,
    results: dict[ValidationResultIdentifier, ExpectationSuiteValidationResult],
    pages: dict[ValidationResultIdentifier, Path],
) -> Path:
    run_name, run_time = run_id.to_tuple()
    path = docs_dir / "runs" / run_name / f"{run_time}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f'<tr><td><a href="{html.escape(os.path.relpath(pages[key], path.parent))}">'
        f"{html.escape(key.expectation_suite_identifier.name)}</a></td>"
        f"<td>{'passed' if result.success else 'FAILED'}</td>"
        f"<td>{result.statistics['unsuccessful_expectations']} of "
        f"{result.statistics['evaluated_expectations']}</td></tr>"
        for key, result in results.items()
    )
    index = html.escape(os.path.relpath(docs_dir / "index.html", path.parent))
    verdict = "passed" if all(r.success for r in results.values()) else "FAILED"
    _write_text(
        path,
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Validation {html.escape(run_name)}</title></head><body>"
        f"<h1>Validation run {html.escape(run_name)}: {verdict}</h1>"
        f"<p>Run time {html.escape(run_time)}. <a href='{index}'>All validations</a></p>"
        f"<table border='1' cellpadding='4'><tr><th>suite</th><th>result</th>"
        f"<th>failed expectations</th></tr>{rows}</table></body></html>",
    )
    return path


def _write_text(path: Path, text: str) -> None:
    """Write aside, then rename: a reader never sees half a page."""
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8"
    ) as f:
        f.write(text)
    os.replace(f.name, path)
