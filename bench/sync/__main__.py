"""``python -m bench.sync``: see :mod:`bench.sync.run`."""

import sys

from bench.sync.run import main

sys.exit(main())
