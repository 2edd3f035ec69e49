"""``python -m stratoflow`` is the ``stratoflow`` command."""

from stratoflow.cli import main

main()
