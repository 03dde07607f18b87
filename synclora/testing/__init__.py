"""Helpers for tests and smoke runs: synthetic media made on the fly, so tests never download anything."""
