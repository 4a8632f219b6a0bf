"""Plain functions over a session, keyword-only arguments, one module per kind of row. They never commit: the caller
owns the transaction (``LabelStore.transaction()``), which is what makes a request all-or-nothing and lets an audit
entry or an idempotency record share the transaction of the action it records.

Functions that change answers, leases or the head pin first lock a counter row (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite writers already hold the database lock from ``BEGIN IMMEDIATE``), so those writes are serialised
by the database itself, across any number of replicas.
"""
