"""``python -m worker``."""

from worker.app import main

if __name__ == "__main__":  # a spawned handler process imports this module too
    main()
