"""The engine benchmark (``python -m bench.engine``): small replicated transactions against plain
SQLite, snapshot and catch-up throughput, memory."""
