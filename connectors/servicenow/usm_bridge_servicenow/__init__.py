"""usm-bridge connector for ServiceNow (Table API), and a simulator of the Table API.

The connector (:class:`ServiceNowConnector`, ``kind = "servicenow"``) is contributed through the
``usm_bridge`` entry point group; the simulator (:mod:`usm_bridge_servicenow.simulator`) is a
loopback server that behaves like the Table API for tests, demos and trying a mapping.
"""

from __future__ import annotations

from .connector import ServiceNowConnector, ServiceNowSettings
from .query import Condition, OrderBy, UnsafeQueryValue, encode_query

__all__ = [
    "Condition",
    "OrderBy",
    "ServiceNowConnector",
    "ServiceNowSettings",
    "UnsafeQueryValue",
    "encode_query",
]
__version__ = "0.1.0"
