"""Great Expectations Data Docs of validation runs, in one local site shared by every process.

Layout of ``docs_dir``:

- ``index.html``, ``validations/<product>/<frame>/<run name>/<run time>/...``,
  ``static/``: the GX site; every run keeps its own pages;
- ``static/vendor/``: the scripts, styles and fonts the pages load (``assets``): the site
  needs no internet, and works wherever the folder is copied;
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import great_expectations as gx
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.id_dict import BatchSpec
from great_expectations.data_context import AbstractDataContext
from great_expectations.data_context.store import ValidationResultsStore
from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier

from ..atomic import write_text
from . import assets
from .context import ephemeral_context

SITE = "yieldops"
RESULTS_DIR = Path(".gx") / "validations"
# The index lists the newest results only: GX reads every listed result on each rebuild.
INDEX_LIMIT = 500


def publish(
    validations: ValidationResultsStore, docs_dir: Path, run_id: gx.RunIdentifier, subject: str
) -> Path:
    """Add the validation results of a run to the site at ``docs_dir``; the run's page.
    ``subject`` names what was validated (the STDF file and its lot) on every page."""
    docs_dir = docs_dir.resolve()  # GX would resolve a relative site against its own root
    docs_dir.mkdir(parents=True, exist_ok=True)
    context = _site_context(docs_dir)
    results = {key: _named(result, subject) for key, result in _stored_results(validations).items()}
    with _exclusive(docs_dir / ".lock"):
        for key, result in results.items():
            context.validation_results_store.set(key, result)
        context.build_data_docs(site_names=[SITE], resource_identifiers=list(results))
        pages = {key: _page(context, key) for key in results}
        assets.install(docs_dir / "static")
        for page in (docs_dir / "index.html", *pages.values()):  # GX rewrites the index each time
            _localize(page, docs_dir)
    return _write_run_page(docs_dir, run_id, subject, results, pages)


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


def _named(
    result: ExpectationSuiteValidationResult, subject: str
) -> ExpectationSuiteValidationResult:
    """GX shows a batch's data asset name in its page's header and title and in the index's
    list; a data frame has none: name the file and lot validated there."""
    spec = result.meta.get("batch_spec", {})
    result.meta["batch_spec"] = BatchSpec({**spec, "data_asset_name": subject})
    return result


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


def _localize(page: Path, docs_dir: Path) -> None:
    static = Path(os.path.relpath(docs_dir / "static", page.parent)).as_posix()
    write_text(page, assets.localized(page.read_text(encoding="utf-8"), static))


def _page(context: AbstractDataContext, key: ValidationResultIdentifier) -> Path:
    (site,) = context.get_docs_sites_urls(resource_identifier=key, site_names=[SITE])
    return Path(unquote(urlparse(site["site_url"]).path))


def _write_run_page(
    docs_dir: Path,
    run_id: gx.RunIdentifier,
    subject: str,
    results: dict[ValidationResultIdentifier, ExpectationSuiteValidationResult],
    pages: dict[ValidationResultIdentifier, Path],
) -> Path:
    run_name, run_time = run_id.to_tuple()
    path = docs_dir / "runs" / run_name / f"{run_time}.html"
    path.parent.mkdir(parents=True, exist_ok=True)

    def relative(target: Path) -> str:
        return html.escape(Path(os.path.relpath(target, path.parent)).as_posix())

    vendor = docs_dir / "static" / assets.VENDOR
    rows = "".join(
        f"<tr><td>{_verdict(result.success)}</td>"
        f'<td><a href="{relative(pages[key])}">'
        f"{html.escape(key.expectation_suite_identifier.name)}</a></td>"
        f"<td>{result.statistics['unsuccessful_expectations']} of "
        f"{result.statistics['evaluated_expectations']}</td></tr>"
        for key, result in results.items()
    )
    verdict = _verdict(all(r.success for r in results.values()))
    write_text(
        path,
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Validation of {html.escape(subject)}</title>"
        f'<link rel="stylesheet" href="{relative(vendor / "bootstrap/css/bootstrap.min.css")}">'
        f'<link rel="stylesheet" href="{relative(vendor / "fontawesome/css/all.min.css")}">'
        "</head><body class='container py-4'>"
        f"<h1 class='h3'>Validation of {html.escape(subject)}: {verdict}</h1>"
        f"<p>Run {html.escape(run_name)} at {html.escape(run_time)}. "
        f"<a href='{relative(docs_dir / 'index.html')}'>All validations</a></p>"
        "<table class='table table-sm'><thead><tr><th>result</th><th>expectation suite</th>"
        f"<th>failed expectations</th></tr></thead><tbody>{rows}</tbody></table></body></html>",
    )
    return path


def _verdict(success: bool) -> str:
    """Passed or failed, with the icon GX's pages show for it."""
    if success:
        return '<i class="fas fa-check-circle text-success" aria-hidden="true"></i> passed'
    return '<i class="fas fa-times text-danger" aria-hidden="true"></i> FAILED'
