"""``python -m bench.bootstrap``: see :mod:`bench.bootstrap.run`."""

import sys

from bench.bootstrap.run import main

sys.exit(main())
