"""``python -m bench.sql``: see :mod:`bench.sql.run`."""

import sys

from bench.sql.run import main

sys.exit(main())
