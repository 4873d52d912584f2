"""SOC correlation engine: alarms and KPI samples in, prioritized customer-impact incidents out.

The package is a pure core (``engine.core``: ``alarms`` → rule forms → ``incidents`` with ``impact``
and ``priority``) driven through ``core.pipeline.Pipeline`` and read through its ``query``
(``core.query.CoreQuery``); adapters (replay, MQTT, HTTP, store) do the I/O around it. One thing
happens at import time: ``engine.compiled`` decides whether the core compiled by mypyc runs or its
source (``engine.compiled.CORE`` says which and why).
"""

from engine import compiled as compiled

__version__ = "0.1.0"
