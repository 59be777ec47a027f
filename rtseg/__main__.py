"""``python -m rtseg``: the same as the ``rtseg`` command (GUI, or headless without a display)."""

from rtseg.cli.app import main

raise SystemExit(main())
