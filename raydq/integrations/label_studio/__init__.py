"""The Label Studio connector: a project whose tasks are the items raydq selects, and whose annotations become
raydq labels (``python jobs/label_studio.py``)."""

from raydq.integrations.label_studio.config import SyncSettings
from raydq.integrations.label_studio.server import create_endpoint, run_connector
from raydq.integrations.label_studio.sync import LabelStudioSync, PassReport

__all__ = ["LabelStudioSync", "PassReport", "SyncSettings", "create_endpoint", "run_connector"]
