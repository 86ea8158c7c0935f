"""Code the benchmarks share: processes and clusters of nodes (litecluster, etcd, dqlite), load
generators, read paths, Redis peers, the workload, and the report building blocks."""
