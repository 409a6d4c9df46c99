"""``python -m conveyor.cli``: the same as the ``conveyor`` command."""

from __future__ import annotations

import sys

from conveyor.cli import main

sys.exit(main())
