"""``python -m litecluster``: the same as the ``litecluster`` command."""

from litecluster.cli.main import main

main()
