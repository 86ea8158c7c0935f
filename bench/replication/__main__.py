"""``python -m bench.replication``: see :mod:`bench.replication.run`."""

import sys

from bench.replication.run import main

sys.exit(main())
