"""The bootstrap benchmark (``python -m bench.bootstrap``): snapshot install and catch-up of a new
replica node and a new embedded replica, and their memory."""
