"""``python -m geneshot``: the same as the ``geneshot`` console script."""

from geneshot.cli import main

if __name__ == "__main__":
    main(prog_name="geneshot")
