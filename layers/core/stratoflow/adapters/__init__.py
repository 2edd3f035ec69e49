"""Adapters implement the ports: ``local`` (SQLite, processes) and, later, ``aws``."""
