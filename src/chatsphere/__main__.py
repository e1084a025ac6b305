"""``python -m chatsphere``: the command line."""

from .cli import main

raise SystemExit(main())
