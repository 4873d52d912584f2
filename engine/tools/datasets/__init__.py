"""Converters from public alarm datasets to the engine's inputs (topology, event replay, config).

The datasets themselves live outside the project (``../shared/datasets``) and are never copied in;
see ``docs/datasets.md``. Nothing here runs at import time.
"""
