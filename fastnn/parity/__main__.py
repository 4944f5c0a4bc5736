"""python -m fastnn.parity: see fastnn/parity/__init__.py."""
import sys

from . import main

sys.exit(main())
