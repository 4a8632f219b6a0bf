"""One module per schema revision; 0001 is the schema raydq 0.1 created with ``create_all``."""
