"""The replication benchmark (``python -m bench.replication``): commit-to-visible lag, maximum
sustained rate, bytes shipped and fan-out, over real node processes."""
