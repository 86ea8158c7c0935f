"""``python -m bench.kv``: see :mod:`bench.kv.run`."""

import sys

from bench.kv.run import main

sys.exit(main())
