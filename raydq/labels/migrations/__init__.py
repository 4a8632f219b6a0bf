"""Alembic migrations of the label store (run them with ``python -m raydq.admin db upgrade``)."""
