"""Process-wide switches read once from the environment, below every layer.

``WSDAEMON_PURE_PYTHON=1`` forces the pure-Python masking path (the C
accelerator is not loaded); the codecs ask here instead of reading the
environment themselves.
"""

import os

PURE_PYTHON = bool(os.environ.get("WSDAEMON_PURE_PYTHON"))
