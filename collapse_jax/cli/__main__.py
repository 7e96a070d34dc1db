"""``python -m collapse_jax.cli``: the ``collapse-jax`` command line."""

import sys

from . import main

sys.exit(main())
