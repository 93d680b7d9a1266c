"""STDF V4 reading and writing."""
