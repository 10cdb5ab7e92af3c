"""``python -m gateway``: the same as the ``tombola`` command."""

import sys

from gateway.cli import main

sys.exit(main())
