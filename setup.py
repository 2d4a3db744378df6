"""Build hook for the optional C accelerator; everything else is in setup.cfg.

The extension is optional: without a compiler wsdaemon installs and runs in
pure Python (``WSDAEMON_NO_SPEEDUPS=1`` skips it on purpose).
"""

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("WSDAEMON_NO_SPEEDUPS"):
    ext_modules.append(
        Extension(
            "wsdaemon.proto._speedups",
            [
                "wsdaemon/proto/_speedups.c",
                "wsdaemon/proto/_numbered.c",
                "wsdaemon/proto/_http_head.c",
                "wsdaemon/proto/_accept_key.c",
                "wsdaemon/proto/_accept.c",
            ],
            depends=["wsdaemon/proto/_speedups.h"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
