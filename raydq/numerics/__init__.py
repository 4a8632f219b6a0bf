"""Shared numeric kernels: one home for each piece of math the head, the strategies and the k-means backends use.

Import from the module that holds the kernel (``raydq.numerics.norms``, ``.probability``, ``.distances``,
``.seeding``, ``.uniforms``, ``.topk``, ``.nearest``, ``.dropout_passes``, ``.blas_threads``). This package is the
bottom layer: it imports nothing else from raydq, so every other package may import it.
"""
