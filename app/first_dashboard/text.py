"""Showing text from run files in Streamlit's Markdown contexts without it being interpreted.

Streamlit escapes HTML when ``unsafe_allow_html`` is off (it is never on here), but Markdown,
links and ``$…$`` LaTeX still render. :func:`esc` backslash-escapes them, so a name or message
appears literally. Item text itself is shown with ``st.text``/``st.code`` or in dataframes,
which never interpret it.
"""

from __future__ import annotations

import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$~:])")


def esc(text: object) -> str:
    r"""Backslash-escape Markdown (and LaTeX ``$``) in ``text``.

    Examples
    --------
    >>> print(esc("**x** [a](b) $y$"))
    \*\*x\*\* \[a\]\(b\) \$y\$
    """
    return _MD_SPECIAL.sub(r"\\\1", str(text))
