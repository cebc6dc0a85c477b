"""`python -m mmtok ...`: the same as the `mmtok` command."""

import sys

from mmtok.cli import main

sys.exit(main())
