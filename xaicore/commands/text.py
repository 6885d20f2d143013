"""Text helpers of the commands' output."""

from __future__ import annotations

import shutil
import textwrap


def wrapped(text: str) -> str:
    """``text`` indented and wrapped to the terminal's width (100 columns off a terminal)."""
    width = max(60, shutil.get_terminal_size((100, 24)).columns)
    return textwrap.fill(text, width, initial_indent="  ", subsequent_indent="      ",
                         break_long_words=False, break_on_hyphens=False)
