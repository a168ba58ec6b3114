"""`python -m hardflow.cli`: the same as the `hardflow` command."""

from hardflow.cli import main

main()
