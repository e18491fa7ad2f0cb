"""cel-python's parser, with its LALR tables loaded from a file instead of built at start.

Both engines parse every ``when`` with cel-python's Lark grammar (:mod:`celcost` estimates the
cost on that tree; the python engine also evaluates it). celpy builds the Lark LALR tables the
first time it parses: 0.45-0.55 s of a function's start on two cores, before the filter can
answer its first event. Lark can save the tables and load them again in ~0.02-0.03 s
(``cache``); the file is :data:`CACHE`, next to this module. ``make build`` writes it before
building the wheel the functions vendor, so a function image ships it; a source checkout
writes it the first time it parses (it is git-ignored).

Lark checks the file against the grammar, the parser options, its own version and Python's,
and builds the tables as before when they differ (rewriting the file where it may, as a
read-only install may not): a stale file costs the time it would have saved, never a wrong
parse. The start-up log line says how long getting the parser took.

Only here is ``celpy.celparser.CELParser.CEL_PARSER`` (celpy's one shared Lark instance) set,
with the options celpy 0.5 gives it: anything that parses CEL calls :func:`install` first.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger(__name__)

#: The saved LALR tables (a pickle Lark writes and reads; part of the installed package).
CACHE: Final = Path(__file__).with_name("celparse.cache")


def install() -> None:
    """Give celpy its Lark parser, loaded from :data:`CACHE` when it fits (idempotent)."""
    import lark
    from celpy import celparser

    if celparser.CELParser.CEL_PARSER is not None:
        return
    started = time.perf_counter()
    grammar = (Path(celparser.__file__).parent / "cel.lark").read_text()
    celparser.CELParser.CEL_PARSER = lark.Lark(
        grammar,
        # As celpy's CELParser.__init__ (0.5) builds it; only ``cache`` is ours.
        parser="lalr",
        start="expr",
        debug=True,
        g_regex_flags=re.M,
        lexer_callbacks={"IDENT": celparser.CELParser.ambiguous_literals},
        propagate_positions=True,
        maybe_placeholders=False,
        priority="invert",
        tree_class=lark.Tree,
        cache=str(CACHE),
    )
    logger.info(
        "CEL parser ready in %.3f s (LALR tables cached in %s)",
        time.perf_counter() - started,
        CACHE,
    )


def parser() -> Any:
    """A celpy ``CELParser`` (its ``parse`` raises ``CELParseError``)."""
    install()
    from celpy.celparser import CELParser

    return CELParser()
