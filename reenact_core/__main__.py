"""`python -m reenact_core ...`: see reenact_core.cli."""
import sys

from .cli import main

sys.exit(main())
