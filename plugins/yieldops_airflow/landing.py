"""The landing zone as the ingest sensor and its trigger look at it: which landed files
the ledger has not finished. Both import it; it imports neither."""

from __future__ import annotations

MAX_KEYS_IN_EVENT = 100


def pending_keys() -> list[str]:
    """Keys of landed files the ledger has not finished (new, changed, failed or stale)."""
    from yieldops.landing.claims import pending_files
    from yieldops_airflow.hooks import LandingZoneHook
    from yieldops_airflow.runtime import open_ledger, runtime_settings

    settings = runtime_settings()
    with open_ledger(settings) as ledger:
        return [f.key for f in pending_files(LandingZoneHook(settings).get_conn(), ledger)][
            :MAX_KEYS_IN_EVENT
        ]
