"""`python -m infra`: see infra/cli.py."""
import sys

from .cli import main

sys.exit(main())
