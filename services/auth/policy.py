"""What a new password must be: 10 to 128 characters, not a common password, not mostly the username.

Length is the rule that matters most (NIST SP 800-63B: a minimum, a generous maximum, no composition
rules); a blocklist then refuses what attackers try first, whatever its length. The list is the
19,646 (19,640 distinct) most common passwords from Royce Williams' 2017 compilation of breach corpora, as Django
ships it (``django/contrib/auth/common-passwords.txt.gz``, BSD-3-Clause), stored here lowercase,
one a line, in ``common-passwords.txt``; a password is compared lowercased, so ``Password123`` is
refused like ``password123``. The rules apply to registration only: an account made under older
rules still logs in.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

PASSWORD_MIN, PASSWORD_MAX = 10, 128
COMMON_PASSWORDS_FILE = "common-passwords.txt"


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("services.auth").joinpath(COMMON_PASSWORDS_FILE).read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def is_common(password: str) -> bool:
    return password.lower() in common_passwords()
