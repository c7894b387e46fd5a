"""``python -m crnn``: the ``crnn`` command (:mod:`crnn.cli`)."""
import sys

from crnn.cli import main

sys.exit(main())
