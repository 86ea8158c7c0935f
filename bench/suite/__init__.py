"""Every benchmark in one run (``python -m bench.suite``, run by ``litecluster bench``): the
scenarios, the summary of their targets, the plots and the README headline."""
