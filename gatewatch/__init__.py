"""gatewatch: alerting for LLM gateways.

The detection core lives in the top-level package ``models`` (pure, no I/O), the
sources and sinks in ``connectors``, the Faust service in ``streams``. This package
holds the command line and the glue that runs the core over files (replay).
"""

__version__ = "0.1.0"
