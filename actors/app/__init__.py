"""The main process: configuration, the default tree, the `exoarmur` command.
The top of the layering: it may use every layer below it."""
