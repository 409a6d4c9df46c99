"""``python -m store`` serves; ``python -m store migrate`` brings the schema to the newest
revision and exits (the deployment's migration step: a Job, an init container)."""

import sys

from store.app import main, migrate_main

if __name__ == "__main__":
    if sys.argv[1:] == ["migrate"]:
        migrate_main()
    elif sys.argv[1:]:
        sys.exit(f"usage: python -m store [migrate] (got {' '.join(sys.argv[1:])!r})")
    else:
        main()
