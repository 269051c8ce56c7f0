"""``python -m clients.results --schema [--out PATH]``."""

from clients.results.files import main

raise SystemExit(main())
