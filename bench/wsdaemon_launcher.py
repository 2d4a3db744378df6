"""Run ``python -m wsdaemon ...`` from one given source tree: ``launcher.py SRC ARGS...``.

The benchmark must measure the tree it is pointed at (``run.py --wsdaemon-src``),
but an editable install of wsdaemon elsewhere adds a finder that would resolve
``wsdaemon.*`` modules from that other checkout. This drops such finders and puts
SRC first on sys.path before running the package's __main__.
"""

import runpy
import sys


def main() -> None:
    src = sys.argv[1]
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
    sys.path_importer_cache.clear()
    sys.path.insert(0, src)
    sys.argv = ["wsdaemon", *sys.argv[2:]]
    runpy.run_module("wsdaemon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
