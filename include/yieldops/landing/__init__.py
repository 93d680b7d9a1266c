"""Landing zones (local folder, S3) and the ledger of landed files."""
