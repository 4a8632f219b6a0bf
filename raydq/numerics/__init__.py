"""Numeric kernels shared by the strategies and the pool shards."""
