"""raydq: DropQuery active learning on frozen vision foundation models, served with Ray."""

__version__ = "0.1.0"
