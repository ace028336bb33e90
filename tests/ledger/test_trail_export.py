"""A trail export verifies against the chain, and every kind of tampering is named where it is."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from ledger import merkle, trail_export
from ledger.access import canonical_entry
from ledger.anchoring import anchor_trail
from ledger.audit import Head
from ledger.errors import ProofError
from ledger.trail_export import (
    _ENTRY_V1_KEYS,
    _FAST_CANONICAL,
    ExportMismatch,
    MalformedExport,
    _levels,
    _Scan,
    _subtrees,
    export_trail,
    load_chain_heads,
    read_header,
    verify_export,
    verify_export_file,
)
from tests.conftest import Consortium, make_consortium

FIRST, SECOND, TAIL = 20, 5, 3  # decisions before each anchor, then left unanchored


@dataclass
class Exported:
    consortium: Consortium
    account: str
    old: list[str]  # exported after the first anchor, before the second
    lines: list[str]  # exported at the end: 28 entries, heads of size 20 and 25

    def heads(self) -> list[Head]:
        instance = self.consortium.instance
        contracts = instance.require_contracts()
        return load_chain_heads(instance.chain, contracts.deployment, self.account)


def _decide(c: Consortium, n: int) -> None:
    for i in range(n):
        unlicensed = i % 4 == 3  # some denials among the allowances
        c.instance.access.check(
            resource_id=c.unlicensed_id if unlicensed else c.resource_id,
            requesting_member="CN-B",
            patron=f"{i:064x}",
            patron_category="faculty",
            purpose="research",
            method="copy",
            scope="part",
            destination_country="CN",
        )


def _export(c: Consortium) -> list[str]:
    out = io.StringIO()
    export_trail(c.instance, "CN-A", out)
    return out.getvalue().splitlines(keepends=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    c = make_consortium(tmp_path_factory.mktemp("trail-export"))
    account = c.members["CN-A"].account
    try:
        _decide(c, FIRST)
        anchor_trail(c.instance, "CN-A", account)
        old = _export(c)
        _decide(c, SECOND)
        anchor_trail(c.instance, "CN-A", account)
        _decide(c, TAIL)
        yield Exported(c, account.address, old, _export(c))
    finally:
        c.instance.close()


def _entry_line(lines: list[str], seq: int) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(lines[seq + 1])
    assert obj["type"] == "entry" and obj["seq"] == seq
    return obj


def _raw_body(line: str) -> str:
    """The body of a version 2 entry line, verbatim."""
    return line[line.index('"body":') + 7 : line.rindex("}")]


def _v2_line(seq: int, leaf_hash: str, body: str) -> str:
    """An entry line in the exact form the exporter writes (the verifier's fast path)."""
    return f'{{"type":"entry","seq":{seq},"leaf_hash":"{leaf_hash}","body":{body}}}\n'


def _with_body(obj: dict[str, Any], body: str, *, rehash: bool) -> str:
    # a careful forger keeps the line self-consistent (rehash)
    leaf = merkle.leaf_hash(body.encode()).hex() if rehash else obj["leaf_hash"]
    return _v2_line(obj["seq"], leaf, body)


def _as_v1(lines: list[str]) -> list[str]:
    """The same export in format version 1: each body held as a JSON string."""
    header = dict(json.loads(lines[0]), version=1)
    out = [json.dumps(header, separators=(",", ":")) + "\n"]
    for line in lines[1:]:
        obj = json.loads(line)
        if obj["type"] == "entry":
            obj["body"] = _raw_body(line)
        out.append(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
    return out


# -- an untouched export ---------------------------------------------------------------


def test_an_untouched_export_verifies_with_both_heads_and_the_unanchored_tail(
    exported: Exported,
) -> None:
    report = verify_export(exported.lines, exported.heads())
    assert (report.entries, report.heads, report.anchored_size, report.unanchored) == (
        28,
        2,
        25,
        3,
    )
    assert report.anchored_root == exported.heads()[-1].root
    assert report.file_heads == 2
    assert report.header.member == "CN-A"
    assert report.header.account == exported.account
    assert report.header.size == 28


def test_the_export_format_is_a_header_then_entries_then_heads(exported: Exported) -> None:
    rows = [json.loads(line) for line in exported.lines]
    assert rows[0]["type"] == "libshare-trail" and rows[0]["version"] == 2
    assert [r["type"] for r in rows[1:]] == ["entry"] * 28 + ["head"] * 2
    assert [r["seq"] for r in rows[1:29]] == list(range(28))
    assert [(r["size"], r["root"]) for r in rows[29:]] == [
        (h.size, h.root.hex()) for h in exported.heads()
    ]
    for row, line in zip(rows[1:29], exported.lines[1:29], strict=True):
        body = _raw_body(line).encode()  # the anchored bytes, verbatim: no string escaping
        assert rfc8785.dumps(row["body"]) == body
        assert row["leaf_hash"] == merkle.leaf_hash(body).hex()
        assert line == _v2_line(row["seq"], row["leaf_hash"], body.decode())


def test_every_real_entry_takes_the_fast_canonical_path(exported: Exported) -> None:
    bodies = [_raw_body(line) for line in exported.lines[1:29]]
    assert all(_FAST_CANONICAL.fullmatch(body) for body in bodies)


def test_an_export_without_head_lines_still_verifies_against_the_chain(
    exported: Exported,
) -> None:
    report = verify_export(exported.lines[:29], exported.heads())
    assert (report.heads, report.file_heads, report.unanchored) == (2, 0, 3)


def test_a_member_with_no_anchored_head_verifies_everything_as_unanchored(
    exported: Exported,
) -> None:
    report = verify_export(exported.lines[:29], [])
    assert (report.entries, report.heads, report.anchored_size, report.unanchored) == (
        28,
        0,
        0,
        28,
    )


# -- tampering with entries -------------------------------------------------------------


def _edited(field: str, value: Any) -> Any:
    if field == "decision":
        return "deny" if value == "allow" else "allow"
    if field == "fee_minor":
        return 1 if value is None else value + 1
    if field == "at":
        return value[:17] + ("00" if value[17:19] != "00" else "01") + value[19:]
    if field == "patron":
        return "f" * 64
    return str(value) + "x"


@pytest.mark.parametrize("field", ["decision", "reason", "patron", "fee_minor", "at"])
def test_an_edited_field_of_an_anchored_entry_fails_at_the_first_head_covering_it(
    exported: Exported, field: str
) -> None:
    lines = list(exported.lines)
    entry = _entry_line(lines, 7)
    body = entry["body"]
    body[field] = _edited(field, body[field])
    lines[8] = _with_body(entry, canonical_entry(body).decode(), rehash=True)
    with pytest.raises(
        ExportMismatch,
        match=r"head of size 20 .*anchored root [0-9a-f]{64}, "
        r"recomputed [0-9a-f]{64}; an entry from 0 to 19 differs",
    ) as info:
        verify_export(lines, exported.heads())
    assert info.value.head_size == 20


def test_an_edited_entry_after_the_first_head_is_narrowed_to_the_second_heads_range(
    exported: Exported,
) -> None:
    lines = list(exported.lines)
    entry = _entry_line(lines, 22)
    body = entry["body"]
    body["reason"] = "allowed" if body["reason"] != "allowed" else "no_licence"
    lines[23] = _with_body(entry, canonical_entry(body).decode(), rehash=True)
    with pytest.raises(ExportMismatch, match=r"head of size 25 .*an entry from 20 to 24 differs"):
        verify_export(lines, exported.heads())


def test_an_edited_body_with_its_old_leaf_hash_fails_at_that_entry(exported: Exported) -> None:
    lines = list(exported.lines)
    entry = _entry_line(lines, 5)
    lines[6] = _with_body(entry, _raw_body(lines[6]).replace('"CN-B"', '"CN-C"'), rehash=False)
    with pytest.raises(ExportMismatch, match="entry 5: leaf hash does not match body") as info:
        verify_export(lines, exported.heads())
    assert info.value.seq == 5


def test_a_wrong_leaf_hash_field_fails_at_that_entry_even_in_the_unanchored_tail(
    exported: Exported,
) -> None:
    lines = list(exported.lines)
    lines[27] = _v2_line(26, "ab" * 32, _raw_body(lines[27]))
    with pytest.raises(
        ExportMismatch, match=f"entry 26: leaf hash does not match body: the line says {'ab' * 32}"
    ):
        verify_export(lines, exported.heads())


def _spaced(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False)  # equal, but not canonical


def test_a_non_canonical_but_equivalent_body_in_a_version_1_file_is_named_at_its_entry(
    exported: Exported,
) -> None:
    lines = _as_v1(exported.lines)
    entry = json.loads(lines[4])
    spaced = _spaced(json.loads(entry["body"]))
    assert spaced != entry["body"] and json.loads(spaced) == json.loads(entry["body"])
    entry.update(body=spaced, leaf_hash=merkle.leaf_hash(spaced.encode()).hex())
    lines[4] = json.dumps(entry, ensure_ascii=False) + "\n"
    with pytest.raises(ExportMismatch, match="entry 3: the body is not RFC 8785 canonical JSON"):
        verify_export(lines, exported.heads())


def test_a_reformatted_anchored_body_with_a_recomputed_leaf_fails_at_its_head(
    exported: Exported,
) -> None:
    lines = list(exported.lines)
    entry = _entry_line(lines, 3)
    lines[4] = _with_body(entry, _spaced(entry["body"]), rehash=True)
    with pytest.raises(ExportMismatch, match=r"head of size 20 .*an entry from 0 to 19 differs"):
        verify_export(lines, exported.heads())


def test_a_reformatted_body_under_its_old_leaf_hash_is_named_not_canonical(
    exported: Exported,
) -> None:
    lines = list(exported.lines)
    entry = _entry_line(lines, 3)
    lines[4] = _with_body(entry, _spaced(entry["body"]), rehash=False)
    with pytest.raises(ExportMismatch, match="entry 3: the body is not RFC 8785 canonical JSON"):
        verify_export(lines, exported.heads())


def test_a_reformatted_unanchored_body_is_named_not_canonical_even_rehashed(
    exported: Exported,
) -> None:
    lines = list(exported.lines)
    entry = _entry_line(lines, 26)
    lines[27] = _with_body(entry, _spaced(entry["body"]), rehash=True)
    with pytest.raises(ExportMismatch, match="entry 26: the body is not RFC 8785 canonical JSON"):
        verify_export(lines, exported.heads())


def test_a_body_of_bytes_that_are_not_json_is_malformed_where_it_stands(
    exported: Exported,
) -> None:
    lines = list(exported.lines)
    lines[6] = _v2_line(5, _entry_line(lines, 5)["leaf_hash"], "nonsense")
    with pytest.raises(MalformedExport, match=r"line 7: not a JSON object \("):
        verify_export(lines, exported.heads())


def test_a_deleted_entry_is_named_missing(exported: Exported) -> None:
    lines = list(exported.lines)
    del lines[1 + 5]
    with pytest.raises(ExportMismatch, match="entry 5 is missing: line 7 holds entry 6") as info:
        verify_export(lines, exported.heads())
    assert info.value.seq == 5


def test_an_inserted_entry_with_a_repeated_number_appears_twice(exported: Exported) -> None:
    lines = list(exported.lines)
    entry = _entry_line(lines, 9)
    body = entry["body"]
    body["decision_id"] = "0x" + "ee" * 32
    lines.insert(11, _with_body(entry, canonical_entry(body).decode(), rehash=True))
    with pytest.raises(ExportMismatch, match="entry 9 appears twice: line 12 repeats line 11"):
        verify_export(lines, exported.heads())


def test_an_inserted_entry_with_the_rest_renumbered_fails_at_the_first_head(
    exported: Exported,
) -> None:
    lines = list(exported.lines)
    header = json.loads(lines[0])
    rows = [(json.loads(line)["leaf_hash"], _raw_body(line)) for line in lines[1:29]]
    rows.insert(10, rows[10])
    header["size"] = len(rows)
    forged = [json.dumps(header) + "\n"] + [_v2_line(s, *row) for s, row in enumerate(rows)]
    with pytest.raises(ExportMismatch, match=r"head of size 20 .*an entry from 0 to 19 differs"):
        verify_export(forged, exported.heads())


def test_two_swapped_entries_are_named_out_of_order(exported: Exported) -> None:
    lines = list(exported.lines)
    lines[1 + 12], lines[1 + 13] = lines[1 + 13], lines[1 + 12]
    with pytest.raises(
        ExportMismatch, match="entry 12 is out of order: line 14 holds entry 13 and line 15"
    ):
        verify_export(lines, exported.heads())


def test_swapped_bodies_under_kept_numbers_fail_at_the_head(exported: Exported) -> None:
    lines = list(exported.lines)
    a, b = _entry_line(lines, 12), _entry_line(lines, 13)
    a_body, b_body = _raw_body(lines[13]), _raw_body(lines[14])
    lines[13] = _v2_line(12, b["leaf_hash"], b_body)
    lines[14] = _v2_line(13, a["leaf_hash"], a_body)
    with pytest.raises(ExportMismatch, match="head of size 20"):
        verify_export(lines, exported.heads())


def test_a_duplicated_entry_appears_twice(exported: Exported) -> None:
    lines = list(exported.lines)
    lines.insert(1 + 8, lines[1 + 7])
    with pytest.raises(ExportMismatch, match="entry 7 appears twice: line 10 repeats line 9"):
        verify_export(lines, exported.heads())


# -- truncation, replay and forged heads ------------------------------------------------


def test_a_file_truncated_before_the_last_anchored_head_names_that_head(
    exported: Exported,
) -> None:
    with pytest.raises(
        ExportMismatch, match="head of size 25 is anchored on chain but the file ends after 22"
    ) as info:
        verify_export(exported.lines[:23], exported.heads())
    assert info.value.head_size == 25


def test_a_file_truncated_in_the_unanchored_tail_is_short_of_its_header(
    exported: Exported,
) -> None:
    with pytest.raises(
        ExportMismatch,
        match="entry 27 is missing: the header declares 28 entries, the file holds 27",
    ):
        verify_export(exported.lines[:28], exported.heads())


def test_replaying_an_older_export_fails_at_the_newer_head(exported: Exported) -> None:
    assert verify_export(exported.old, exported.heads()[:1]).entries == 20
    with pytest.raises(
        ExportMismatch, match="head of size 25 is anchored on chain but the file ends after 20"
    ):
        verify_export(exported.old, exported.heads())


def test_a_forged_head_line_names_its_size_and_both_roots(exported: Exported) -> None:
    lines = list(exported.lines)
    head = json.loads(lines[29])
    assert head["size"] == 20
    lines[29] = json.dumps(dict(head, root="cd" * 32)) + "\n"
    with pytest.raises(
        ExportMismatch,
        match=f"head of size 20 in the file claims root {'cd' * 32}, the chain anchored "
        f"{exported.heads()[0].root.hex()}: a forged head",
    ) as info:
        verify_export(lines, exported.heads())
    assert info.value.head_size == 20


def test_a_head_line_the_chain_never_anchored_is_forged(exported: Exported) -> None:
    lines = [
        *exported.lines,
        json.dumps({"type": "head", "size": 28, "root": "00" * 32, "block": 1, "tx": "0x00"})
        + "\n",
    ]
    with pytest.raises(ExportMismatch, match=r"head of size 28 in the file .* was never anchored"):
        verify_export(lines, exported.heads())


def test_chain_heads_out_of_order_are_refused(exported: Exported) -> None:
    with pytest.raises(ProofError, match="sizes must strictly increase"):
        verify_export(exported.lines, list(reversed(exported.heads())))


# -- malformed lines ---------------------------------------------------------------------


def test_a_line_that_is_not_json_names_its_line_number(exported: Exported) -> None:
    lines = list(exported.lines)
    lines[10] = lines[10][:40] + "\n"
    with pytest.raises(MalformedExport, match=r"line 11: not a JSON object \(") as info:
        verify_export(lines, exported.heads())
    assert info.value.line == 11


def test_an_entry_without_its_leaf_hash_names_the_missing_field(exported: Exported) -> None:
    lines = list(exported.lines)
    entry = _entry_line(lines, 4)
    del entry["leaf_hash"]
    lines[5] = json.dumps(entry) + "\n"
    with pytest.raises(MalformedExport, match="line 6: the entry lacks leaf_hash"):
        verify_export(lines, exported.heads())


def test_a_duplicate_key_in_a_line_is_malformed(exported: Exported) -> None:
    lines = list(exported.lines)
    lines[3] = lines[3].replace('{"type":"entry",', '{"type":"entry","seq":0,', 1)
    with pytest.raises(MalformedExport, match="line 4: not a JSON object \\(duplicate key 'seq'"):
        verify_export(lines, exported.heads())


def test_a_string_sequence_number_is_malformed(exported: Exported) -> None:
    lines = list(exported.lines)
    lines[3] = json.dumps(dict(_entry_line(lines, 2), seq="2")) + "\n"
    with pytest.raises(
        MalformedExport, match='line 4: the entry\'s seq is "2", want a JSON integer'
    ):
        verify_export(lines, exported.heads())


def test_an_entry_after_the_head_lines_is_malformed(exported: Exported) -> None:
    lines = [*exported.lines, exported.lines[1]]
    with pytest.raises(MalformedExport, match="line 32: an entry after the head lines"):
        verify_export(lines, exported.heads())


def test_an_empty_file_or_a_foreign_header_is_malformed(exported: Exported) -> None:
    with pytest.raises(MalformedExport, match="line 1: the file is empty"):
        verify_export([], [])
    with pytest.raises(MalformedExport, match="line 1: not a libshare-trail header"):
        read_header('{"type": "something-else"}')
    header = json.loads(exported.lines[0])
    del header["chain_id"]
    with pytest.raises(MalformedExport, match="line 1: the header lacks chain_id"):
        read_header(json.dumps(header))


# -- the fast canonical check agrees with RFC 8785 ----------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=30)
_value = st.one_of(
    _text, st.integers(-(10**15) + 1, 10**15 - 1), st.none(), st.lists(_text, max_size=3)
)


@given(st.fixed_dictionaries(dict.fromkeys(_ENTRY_V1_KEYS, _value)))
def test_the_fast_canonical_path_accepts_only_what_rfc8785_produces(entry: dict[str, Any]) -> None:
    canonical = rfc8785.dumps(entry).decode()
    assert _FAST_CANONICAL.fullmatch(canonical)
    spaced = json.dumps(entry, sort_keys=True, ensure_ascii=False)
    assert not _FAST_CANONICAL.fullmatch(spaced)
    escaped = json.dumps(entry, sort_keys=True, separators=(",", ":"))  # \\u escapes
    assert bool(_FAST_CANONICAL.fullmatch(escaped)) == (escaped == canonical)


@pytest.mark.parametrize(
    "variant",
    ['"\\u000a"', '"\\/"', '"\\u0041"', '"\\u001F"', "-0", "01", "1.0", "1e2", '"\\ud800"'],
)
def test_the_fast_canonical_path_refuses_non_canonical_values(variant: str) -> None:
    values = {k: variant if k == "reason" else "null" for k in sorted(_ENTRY_V1_KEYS)}
    assert _FAST_CANONICAL.fullmatch("{" + ",".join(f'"{k}":null' for k in values) + "}")
    body = "{" + ",".join(f'"{k}":{v}' for k, v in values.items()) + "}"
    assert not _FAST_CANONICAL.fullmatch(body)


def test_version_1_entry_lines_in_another_json_layout_verify_the_same(
    exported: Exported,
) -> None:
    v1 = _as_v1(exported.lines)
    relaid = [v1[0]]
    for line in v1[1:]:
        obj = json.loads(line)
        relaid.append(json.dumps(dict(reversed(obj.items())), indent=None) + "\r\n")
    report = verify_export(relaid, exported.heads())
    assert (report.entries, report.heads, report.unanchored) == (28, 2, 3)


def test_a_reformatted_version_2_entry_line_is_caught_at_its_first_entry(
    exported: Exported,
) -> None:
    relaid = [exported.lines[0]]
    for line in exported.lines[1:]:
        obj = json.loads(line)
        relaid.append(json.dumps(dict(reversed(obj.items())), indent=None) + "\r\n")
    with pytest.raises(ExportMismatch, match="entry 0: the body is not RFC 8785 canonical JSON"):
        verify_export(relaid, exported.heads())


def test_version_2_lines_in_another_layout_around_verbatim_bodies_take_the_strict_path(
    exported: Exported,
) -> None:
    relaid = [exported.lines[0]]
    for line in exported.lines[1:29]:
        obj = json.loads(line)
        relaid.append(
            f'{{ "body" : {_raw_body(line)} , "seq": {obj["seq"]}, "type": "entry",\t'
            f'"leaf_hash": "{obj["leaf_hash"]}" }}\r\n'
        )
    relaid += exported.lines[29:]
    report = verify_export(relaid, exported.heads())
    assert (report.entries, report.heads, report.unanchored) == (28, 2, 3)


def test_a_version_1_export_still_verifies(exported: Exported) -> None:
    v1 = _as_v1(exported.lines)
    assert json.loads(v1[0])["version"] == 1
    report = verify_export(v1, exported.heads())
    assert (report.entries, report.heads, report.unanchored) == (28, 2, 3)
    assert report.header.version == 1
    assert report.anchored_root == exported.heads()[-1].root


def test_a_string_body_in_a_version_2_file_is_malformed(exported: Exported) -> None:
    lines = list(exported.lines)
    lines[3] = _as_v1(exported.lines)[3]
    with pytest.raises(MalformedExport, match=r"line 4: the entry's body is .*want a JSON object"):
        verify_export(lines, exported.heads())


def test_bytes_lines_verify_the_same_as_text_lines(exported: Exported) -> None:
    report = verify_export([line.encode() for line in exported.lines], exported.heads())
    assert report == verify_export(exported.lines, exported.heads())


def test_a_line_that_is_not_utf8_is_malformed(exported: Exported) -> None:
    lines = [line.encode() for line in exported.lines]
    lines[5] = lines[5].replace(b"CN-B", b"CN-\xff")
    with pytest.raises(MalformedExport, match="line 6: not UTF-8 text"):
        verify_export(lines, exported.heads())


# -- the file verifier, on two cores ---------------------------------------------------


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trail_export, "_PARALLEL_MIN_BYTES", 0)  # split even a tiny file


def _write(path: Path, lines: list[str]) -> Path:
    path.write_bytes("".join(lines).encode())
    return path


@pytest.mark.usefixtures("two_cores")
@pytest.mark.parametrize("version", [1, 2])
def test_the_file_verifier_on_two_cores_reports_what_the_line_verifier_does(
    exported: Exported, tmp_path: Path, version: int
) -> None:
    lines = exported.lines if version == 2 else _as_v1(exported.lines)
    report = verify_export_file(_write(tmp_path / "t.jsonl", lines), exported.heads())
    assert report == verify_export(lines, exported.heads())
    assert report.header.version == version


def _tampered(exported: Exported, how: str) -> list[str]:
    lines = list(exported.lines)
    if how == "edited body":
        lines[6] = lines[6].replace("CN-B", "CN-C", 1)
    elif how == "edited and rehashed":
        entry = _entry_line(lines, 22)
        entry["body"]["reason"] = "forged"
        lines[23] = _with_body(entry, canonical_entry(entry["body"]).decode(), rehash=True)
    elif how == "deleted":
        del lines[17]
    elif how == "swapped":
        lines[16], lines[17] = lines[17], lines[16]
    elif how == "not json":
        lines[20] = "{not json\n"
    elif how == "truncated":
        lines = lines[:23]
    elif how == "forged head":
        head = json.loads(lines[29])
        lines[29] = json.dumps(dict(head, root="cd" * 32)) + "\n"
    return lines


@pytest.mark.usefixtures("two_cores")
@pytest.mark.parametrize(
    "how",
    [
        "edited body",
        "edited and rehashed",
        "deleted",
        "swapped",
        "not json",
        "truncated",
        "forged head",
    ],
)
def test_the_file_verifier_on_two_cores_names_tampering_as_the_line_verifier_does(
    exported: Exported, tmp_path: Path, how: str
) -> None:
    lines = _tampered(exported, how)
    with pytest.raises(ProofError) as want:
        verify_export(lines, exported.heads())
    path = _write(tmp_path / "t.jsonl", lines)
    with pytest.raises(type(want.value)) as got:
        verify_export_file(path, exported.heads())
    assert isinstance(want.value, ExportMismatch | MalformedExport)
    assert isinstance(got.value, ExportMismatch | MalformedExport)
    assert (str(got.value), got.value.line) == (str(want.value), want.value.line)


@given(st.integers(1, 300), st.data())
def test_subtrees_of_consecutive_scans_give_every_prefix_root(n: int, data: st.DataObject) -> None:
    leaves = [bytes(merkle.leaf_hash(i.to_bytes(4, "big"))) for i in range(n)]
    cut = data.draw(st.integers(0, n))
    pieces = [
        _Scan(first, len(part), 0, _levels(first, part))
        for first, part in ((0, leaves[:cut]), (cut, leaves[cut:]))
        if part
    ]
    subtree = _subtrees(pieces)
    for size in sorted({1, n, cut or 1, data.draw(st.integers(1, n))}):
        hashes = [subtree(*node) for node in merkle.aligned_subtrees(0, size)]
        assert merkle.root_from_subtrees(hashes) == merkle.root_from_leaves(leaves[:size])
