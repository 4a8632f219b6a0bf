"""Shared numeric kernels: one home for each piece of math the head, the strategies and the k-means backends use.

Import from the module that holds the kernel: ``norms``, ``probability``, ``distances`` (pairwise distances and
k-means' assignment step), ``seeding`` (D² sampling, k-means++), ``nearest`` (nearest distinct rows), ``uniforms``,
``topk``, ``grid`` (the global row grid of chunked kernels), ``dropout_passes`` (and ``device``, its torch twin for
GPU shards), ``threads`` (``cpu_budget``, BLAS threads) and ``array_module`` (numpy or cupy). This package is the
bottom layer: it imports nothing from raydq but ``raydq.deadline``, so every other package may import it.
"""
