"""``python -m raydq.admin``: see ``raydq.admin.cli``."""

from raydq.admin.cli import main

raise SystemExit(main())
