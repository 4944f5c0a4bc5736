"""`python -m fastnn.bench [--quick] [--dtype float64] [--csv FILE]`; see cli.py."""

from .cli import main

raise SystemExit(main())
