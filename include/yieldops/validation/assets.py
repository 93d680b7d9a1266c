"""The Data Docs site's browser assets, served from the site itself.

Great Expectations' pages load Bootstrap, jQuery, bootstrap-table, Font Awesome, Vega and
more from public CDNs, and its logo from S3: on a test floor without internet the results
list stays empty and the pass/fail icons are missing. The site gets the same releases in
``static/vendor/`` and every page points at them, relative to the page, so it works offline,
served by the plugin or opened from wherever the folder is copied.

Where they come from: Font Awesome Free from ``fontawesomefree`` (Fonticons' own PyPI
package) and jQuery from ``XStatic-jQuery``; the rest has no PyPI package of the versions
GX's pages name, so it is vendored from npm in ``vendor/`` (sources, checksums and licences
in vendor/README.md). The files are byte for byte the ones the CDNs serve: the pages' own
subresource-integrity hashes still check them.
"""

from __future__ import annotations

import re
from pathlib import Path

import fontawesomefree
from xstatic.pkg import jquery

from ..atomic import copy_stream

VENDORED = Path(__file__).parent / "vendor"
FONT_AWESOME = Path(fontawesomefree.__file__).parent / "static" / "fontawesomefree"
VENDOR = "vendor"  # the assets' folder in the site's static/ folder

_CDNJS = "https://cdnjs.cloudflare.com/ajax/libs"
_JSDELIVR = "https://cdn.jsdelivr.net/npm"
_FILTER_CONTROL = "extensions/filter-control/bootstrap-table-filter-control"
_GX_S3 = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com"
# What the pages load from outside -> its copy, relative to the site's static/ folder.
LOCAL_COPIES = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "vendor/bootstrap/css/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "vendor/bootstrap/js/bootstrap.min.js"
    ),
    f"{_CDNJS}/popper.js/1.12.9/umd/popper.min.js": "vendor/popper.js/umd/popper.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "vendor/jquery/jquery.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "vendor/bootstrap-table/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "vendor/bootstrap-table/bootstrap-table.min.js"
    ),
    f"https://unpkg.com/bootstrap-table@1.19.1/dist/{_FILTER_CONTROL}.min.js": (
        f"vendor/bootstrap-table/{_FILTER_CONTROL}.min.js"
    ),
    # GX names 1.19.0 for this stylesheet alone: the same two rules as 1.19.1's
    f"https://unpkg.com/bootstrap-table@1.19.0/dist/{_FILTER_CONTROL}.css": (
        f"vendor/bootstrap-table/{_FILTER_CONTROL}.min.css"
    ),
    f"https://unpkg.com/bootstrap-table@1.19.0/dist/{_FILTER_CONTROL}.min.css": (
        f"vendor/bootstrap-table/{_FILTER_CONTROL}.min.css"
    ),
    f"{_CDNJS}/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "vendor/bootstrap-datepicker/css/bootstrap-datepicker.min.css"
    ),
    f"{_CDNJS}/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "vendor/bootstrap-datepicker/js/bootstrap-datepicker.min.js"
    ),
    f"{_JSDELIVR}/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "vendor/bootstrap-dark/css/bootstrap-prefers-dark.min.css"
    ),
    f"{_CDNJS}/font-awesome/6.6.0/css/all.min.css": "vendor/fontawesome/css/all.min.css",
    f"{_JSDELIVR}/vega@5": "vendor/vega/vega.min.js",
    f"{_JSDELIVR}/vega-lite@5": "vendor/vega-lite/vega-lite.min.js",
    f"{_JSDELIVR}/vega-embed@6": "vendor/vega-embed/vega-embed.min.js",
    # the logo: GX copies its own into the site's static/images/
    f"{_GX_S3}/logo-long.png": "images/logo-long.png",
    f"{_GX_S3}/full_logo_dark.png": "images/logo-long.png",
}
# A URL in an attribute or a CSS url(): what a page loads, or links to
_QUOTED_URL = re.compile(r"""(?<=["'(])https?://[^"'()\s<>]+""")


def installed_files() -> dict[str, Path]:
    """Every file of the site's ``static/vendor/`` (its path there) -> where it is installed."""
    files = {
        path.relative_to(VENDORED).as_posix(): path
        for path in VENDORED.rglob("*")
        if path.is_file()
    }
    for pattern in ("css/all.min.css", "webfonts/*", "LICENSE.txt"):
        for path in FONT_AWESOME.glob(pattern):
            files[f"fontawesome/{path.relative_to(FONT_AWESOME).as_posix()}"] = path
    files["jquery/jquery.min.js"] = Path(jquery.BASE_DIR) / "jquery.min.js"
    return files


def install(static_dir: Path) -> None:
    """Copy the assets into the site's ``static/`` folder; a copy of the same size stays."""
    for relative, source in installed_files().items():
        target = static_dir / VENDOR / relative
        if not target.is_file() or target.stat().st_size != source.stat().st_size:
            target.parent.mkdir(parents=True, exist_ok=True)
            # The API server may be serving the site meanwhile: it never sees half a file.
            with source.open("rb") as stream:
                copy_stream(stream, target)


def localized(page: str, static_prefix: str) -> str:
    """The page with what it loads from outside pointed at the site's copies;
    ``static_prefix``: the relative URL of the site's ``static/`` folder from the page.
    Links to other sites (GX's home page, ...) stay."""

    def copy_of(match: re.Match) -> str:
        url = match.group(0)
        copy = LOCAL_COPIES.get(url.split("?", 1)[0])  # the logo's URL carries a query
        return f"{static_prefix}/{copy}" if copy else url

    return _QUOTED_URL.sub(copy_of, page)
