"""`python -m exoarmur ...` is the `exoarmur` command."""

from exoarmur.actors.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
