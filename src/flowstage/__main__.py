"""`python -m flowstage` runs the CLI."""

from flowstage.cli.main import main

main()
