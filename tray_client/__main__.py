"""`python -m tray_client`: the same as the `pictor-worker` command."""

from .cli import main

if __name__ == "__main__":
    main()
