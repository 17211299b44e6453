"""``python -m loreg.cli``: the same as the ``loreg`` command."""

import sys

from loreg.cli.main import main

sys.exit(main())
