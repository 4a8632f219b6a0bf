"""Administration of a raydq deployment from the command line: ``python -m raydq.admin --help``."""
