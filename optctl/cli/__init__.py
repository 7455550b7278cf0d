"""The ``optctl`` command: each module parses nothing itself, runs one command and prints.

:mod:`optctl.cli.main` builds the parser (argparse only, so ``--help`` and argument
errors are instant) and loads the module of the command it runs.
"""
