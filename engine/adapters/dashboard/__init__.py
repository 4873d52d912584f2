"""The SOC dashboard: server-rendered pages of the daemon's incidents, live in the browser.

``Dashboard(core, token=...).mount(app)`` adds it under ``/ui`` to the HTTP API's aiohttp
application (see ``app``); ``views`` computes what the pages show; ``security`` holds the
sessions, CSRF tokens and headers; ``templates/`` and ``static/`` are served as they are, with the
front-end libraries vendored in ``static/vendor/`` (``VENDORED.md``). No build step.
"""

from engine.adapters.dashboard.app import PREFIX, Dashboard, DashboardCore

__all__ = ["PREFIX", "Dashboard", "DashboardCore"]
