"""The labeling service: lease batches to annotators, store their labels durably, retrain the head.

Start it::

    serve run serve_configs/local.yaml               # Ray Serve on this machine (SQLite under data/)
    serve deploy serve_configs/cluster.yaml          # a Ray cluster (PostgreSQL, token from the environment)
    python -m raydq.serve.local --config serve_configs/local.yaml --port 8000   # one process, no Ray

HTTP API (JSON; every refusal is a 4xx with ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``)::

    POST /select_batch   {batch_size, strategy?, options?, lease_seconds?}
                         -> {batch_id, items: [{id, uri}], model_version, strategy, lease_expires_at}
    POST /update_labels  {labels: [{id, label, annotator?}], batch_id?}
                         -> {received, created, updated, unchanged, labeled, revision, model_version}
    POST /release_batch  {batch_id} -> {batch_id, released}
    GET  /status         pool size, labeled, leased, classes, model_version, training state and last error, ...
    GET  /model          {model_version, classes, revision, n_labels, trained_at, W, b, head}
    GET  /healthz        {status: "ok"}          (open, like /docs and /openapi.json)

Modules: ``config`` (ServeArgs), ``schemas`` (request/response models), ``api`` (FastAPI app and guards),
``selector`` / ``trainer`` (the cores, no Ray), ``service`` (in-process backend), ``app`` (Serve deployments and
``build_app``), ``local`` (uvicorn runner), ``metrics``.
"""
