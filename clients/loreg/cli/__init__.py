"""The ``loreg`` command line.

Every command accepts ``--url``, ``--token`` and ``--json`` (machine-readable
output on stdout). Errors print one line, ``error: <message>``, on stderr and
exit with the error's code (usage errors 2, Ctrl-C 130); ``LOREG_DEBUG=1``
adds the traceback. Heavy modules (httpx, the server, PEFT) are imported only
by the commands that need them, so ``loreg --help`` is instant.

Layout: :mod:`loreg.cli.main` builds the parser and runs a command,
:mod:`loreg.cli.output` prints, and one module per command group holds its
arguments and handlers (:mod:`~loreg.cli.transfer` push/pull,
:mod:`~loreg.cli.adapters` ls/show/lineage, :mod:`~loreg.cli.aliases`,
:mod:`~loreg.cli.base_models`, :mod:`~loreg.cli.datasets`, :mod:`~loreg.cli.tokens`,
:mod:`~loreg.cli.admin` gc, :mod:`~loreg.cli.cache`, :mod:`~loreg.cli.jobs` and
:mod:`~loreg.cli.server` serve/db/fsck/worker).
"""

from loreg.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
