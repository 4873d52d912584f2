"""SOC correlation engine: alarms and KPI samples in, prioritized customer-impact incidents out.

The package is a pure core (``engine.core``: ``alarms`` → rule forms → ``incidents`` with ``impact``
and ``priority``) driven through ``core.pipeline.Pipeline`` and read through its ``query``
(``core.query.CoreQuery``); adapters (replay, MQTT, HTTP, store) do the I/O around it. Nothing
happens at import time.
"""

__version__ = "0.1.0"
