"""`python -m node` runs the tongban command."""

from node.cli import main

main()
