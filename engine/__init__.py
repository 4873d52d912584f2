"""SOC correlation engine: alarms and KPI samples in, prioritized customer-impact incidents out.

The package is a pure core (``messages`` → ``alarms`` → ``rules`` → ``incidents`` with ``topology``,
``impact`` and ``priority``) driven through ``pipeline.Pipeline``; adapters (replay, MQTT, HTTP,
store) do the I/O around it. Nothing happens at import time.
"""

__version__ = "0.1.0"
