"""``python -m bench.engine``: see :mod:`bench.engine.run`."""

import sys

from bench.engine.run import main

sys.exit(main())
