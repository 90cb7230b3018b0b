"""An Alpaca-v2-compatible paper broker and market-data simulator replaying real bars.

``python -m live.sim --port 8765`` serves it; :class:`SimServer` runs it in-process.
See :mod:`live.sim.server` for the protocols and :mod:`live.sim.broker` for the
matching rules and the account model.
"""

from live.sim.config import SimConfig
from live.sim.server import SimServer, make_app

__all__ = ["SimConfig", "SimServer", "make_app"]
