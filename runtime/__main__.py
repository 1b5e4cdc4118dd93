"""`python -m runtime ...` is the `exoarmur` command."""

from runtime.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
