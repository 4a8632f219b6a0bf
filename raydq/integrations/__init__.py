"""Connectors to the labeling tools teams already use; each talks to raydq over HTTP through ``raydq.client``."""
