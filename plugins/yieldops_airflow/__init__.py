"""Airflow glue for yieldops: thin shells over the ``yieldops`` library.

Modules here import nothing heavy at import time: DAG files import them.
"""
