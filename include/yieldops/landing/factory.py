"""The landing zone behind a URL: a local folder or an S3 prefix."""

from __future__ import annotations

from urllib.parse import urlsplit

from .s3 import S3LandingZone
from .zones import LandingZone, LocalLandingZone


def landing_zone(url: str, s3_client=None) -> LandingZone:
    """The zone behind a URL: ``file:///path``, a plain path, or ``s3://bucket/prefix``.

    For S3, pass a boto3 S3 client (Airflow code gets one from its AWS connection).
    """
    scheme = urlsplit(url).scheme
    if scheme == "s3":
        return S3LandingZone(url, s3_client)
    if scheme in ("", "file"):
        return LocalLandingZone(urlsplit(url).path if scheme == "file" else url)
    raise ValueError(f"unsupported landing zone URL {url!r} (use a folder, file:// or s3://)")
