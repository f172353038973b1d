"""`python -m prgen`: the same command as `prgen`."""

from prgen.cli import main

main(prog_name="prgen")
