"""Test identity: what a test is, across the files and lots of a product.

A test is what the file says it is: its record type (PTR, MPR, FTR), ``TEST_NUM`` and
``TEST_TXT``. Testers reuse numbers (an Advantest 93000 flow may write ``TEST_NUM 0`` for
dozens of different tests), so a number alone does not name a test; and many testers
write the name only on a test's first record, so a record without a name is the test
its number first named in the file (the STDF V4 rule for omitted fields).

Each distinct test gets a ``test_id``: the number and a slug of the name, e.g.
``1003_RO_FREQ`` or ``3251_MGC1_Vopp_CH1_Vopp_RF_OUT1N_1``; only the number when the
name is empty. It depends on nothing but the test itself, so the same test has the same
id in every file. Two rare cases add a short digest of the exact test to the id: a name
longer than :data:`MAX_SLUG` characters (the digest keeps truncated names apart), and
two tests of one file whose ids would coincide (names that differ only in punctuation,
or one number and name on two record types: the second one met gets the digest).

Measurements (model input and validation columns) are named from the test id:
``<test_id>`` for a PTR or FTR result, ``<test_id>.pin<k>`` for pin ``k`` of an MPR,
and ``.r<n>`` after either for the n-th repetition on a die when a product keeps every
repetition (``repeats.tests: all``). A slug never holds a dot, so no name can clash.
"""

from __future__ import annotations

import hashlib
import string

MAX_SLUG = 60
_SLUG_CHARACTERS = frozenset(string.ascii_letters + string.digits)


class _Spaces(dict):
    """str.translate table: letters and digits as they are, any other character a space
    (filled as characters are met: a tester's names use few)."""

    def __missing__(self, code: int) -> str:
        character = chr(code)
        self[code] = character if character in _SLUG_CHARACTERS else " "
        return self[code]


_TO_SPACES = _Spaces()


def slug(name: str) -> str:
    """``name`` with every run of characters other than letters and digits as one ``_``."""
    # translate + split is a third faster than a regex on a reader's hot path
    return "_".join(name.translate(_TO_SPACES).split())


def digest(record: str, test_num: int, name: str) -> str:
    return hashlib.sha1(f"{record}:{test_num}:{name}".encode(), usedforsecurity=False).hexdigest()[
        :6
    ]


def make_test_id(record: str, test_num: int, name: str) -> str:
    """The id of the test ``record`` / ``test_num`` / ``name`` (see the module docstring)."""
    text = slug(name or "")
    if not text:
        return str(test_num)
    if len(text) > MAX_SLUG:
        return f"{test_num}_{text[:MAX_SLUG]}_{digest(record, test_num, name)}"
    return f"{test_num}_{text}"


class TestIds:
    """Hands out test ids for the tests of one file, keeping them unique within it."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, int, str], str] = {}
        self.taken: set[str] = set()

    def __call__(self, record: str, test_num: int, name: str) -> str:
        key = (record, test_num, name)
        found = self.ids.get(key)
        if found is None:
            found = make_test_id(record, test_num, name)
            if found in self.taken:
                found = f"{found}_{digest(record, test_num, name)}"
            self.ids[key] = found
            self.taken.add(found)
        return found

    def __contains__(self, key: tuple[str, int, str]) -> bool:
        return key in self.ids


def measurement_column(test_id: str, pin: int | None = None, repetition: int = 1) -> str:
    """The column of one measurement: a test's result, or one pin's result of an MPR test,
    and the n-th repetition of it on a die when repetitions are kept apart."""
    column = test_id if pin is None else f"{test_id}.pin{pin}"
    return column if repetition <= 1 else f"{column}.r{repetition}"


def refers_to(ref: int | str, test_num: int, test_id: str) -> bool:
    """Whether a test named in a product YAML means this test: a number means every test
    with that number (fine where numbers are unique), a string one test id."""
    if isinstance(ref, int):
        return ref == test_num
    return ref == test_id
