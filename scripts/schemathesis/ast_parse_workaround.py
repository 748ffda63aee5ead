"""Loaded at start-up of the fuzzer's venv (through a .pth file).

CPython 3.11 (seen on 3.11.7) can raise ``SystemError: AST constructor recursion depth
mismatch`` from ``ast.parse`` when the recursion limit changed while the stack
was deep (a CPython bug, fixed in later releases). Hypothesis raises the limit while it runs
and parses lambda sources only to *describe* them in reprs; the error then
aborts a whole schemathesis phase. Turning exactly that error into a
SyntaxError makes Hypothesis fall back to an "unknown lambda" description.
Nothing else changes.
"""

import ast

_parse = ast.parse


def _parse_or_syntax_error(*args, **kwargs):
    try:
        return _parse(*args, **kwargs)
    except SystemError as e:
        if "recursion depth mismatch" not in str(e):
            raise
        raise SyntaxError(f"ast.parse hit a CPython bug: {e}") from e


ast.parse = _parse_or_syntax_error
