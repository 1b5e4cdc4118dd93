"""`python -m exoarmur ...` is the `exoarmur` command."""

from exoarmur.runtime.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
