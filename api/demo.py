"""``libshare demo``: a small consortium, end to end, on the embedded default.

Deploys the contracts, admits three member libraries (two founders, a third by their
vote), registers generated text, image and audio resources with their real sha-256 and
CID, issues the consortium's licence, runs share requests through the access check
(each decision appended to the supplier's Merkle trail before it is answered), anchors
every trail head on chain and verifies every trail against the chain. Run again on the
same data dir, it reuses the consortium and adds another round of requests.
"""

from __future__ import annotations

import math
import random
import struct
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from rich.console import Console
from rich.table import Table
from sqlmodel import col, select

from ledger.access import CheckResult
from ledger.anchoring import anchor_trail, verify_member_trail
from ledger.audit import TrailReport
from ledger.instance import Instance
from ledger.keys import MemberKeys
from ledger.licence import consortium_terms
from ledger.licence_terms import Campaign, Fee
from ledger.onchain import AnchoredHead, ConsortiumContracts, FounderInput
from ledger.registration import NewResource, issue_licence, register_resources, revoke_licence
from ledger.store import LicenceRow, MemberRow, ResourceMetadataRow, ResourceRow

ADMIN_ID = "CONSORTIUM-OFFICE"
GAS_MONEY = 10**20  # 100 ether of the embedded chain's play money per account


@dataclass(frozen=True)
class DemoMember:
    library_id: str
    name: str
    tier: int
    country: str


FOUNDERS = (
    DemoMember("CN-XJTU", "Xi'an Jiaotong University Library", 1, "CN"),
    DemoMember("CN-LZU", "Lanzhou University Library", 2, "CN"),
)
ADMITTED = DemoMember("CN-NWU", "Northwest University Library", 3, "CN")
MEMBERS = (*FOUNDERS, ADMITTED)

TITLES = {
    "text": [
        "敦煌遗书研究 (Studies of the Dunhuang manuscripts)",
        "Silk Road trade ledgers, 1890-1910",
        "陕西地方志 (Shaanxi local gazetteer)",
        "Doctoral thesis: Loess plateau hydrology",
        "Rare book: 唐诗选 (Selected Tang poems), Ming edition",
        "Course reader: Introduction to library science",
        "Master's thesis: Digital preservation of bamboo slips",
    ],
    "image": [
        "Mogao cave mural, digitised plate",
        "Campus map, 1937 survey",
        "Calligraphy scroll, scan",
        "Botanical illustration plate",
    ],
    "audio": [
        "Oral history interview: Qinqiang opera performer",
        "Lecture recording: Silk Road archaeology",
        "Folk song field recording, Gansu",
    ],
}


def run_demo(instance: Instance, console: Console, *, checks: int = 200) -> bool:
    """Run the demo on ``instance``; return True when every trail verified."""
    started = time.perf_counter()
    fresh = not instance.deployed
    if fresh:
        console.print("[bold]Setting up a consortium on the embedded chain…[/bold]")
        keys = _set_up(instance, console)
    else:
        console.print(
            f"[bold]Reusing the consortium in {instance.config.data_dir}[/bold] "
            "(run with a new --data-dir for a fresh one)"
        )
        keys = {m.library_id: instance.keystore.load(m.library_id) for m in MEMBERS}
        instance.sync()
    results = _run_checks(instance, keys, checks)
    anchors: list[tuple[str, AnchoredHead]] = []
    for member in MEMBERS:
        head = anchor_trail(instance, member.library_id, keys[member.library_id].account)
        if head is not None:
            anchors.append((member.library_id, head))
    reports: dict[str, TrailReport | Exception] = {}
    for member in MEMBERS:
        try:
            reports[member.library_id] = verify_member_trail(
                instance, member.library_id, keys[member.library_id].account.address
            )
        except Exception as exc:  # report every member, then fail
            reports[member.library_id] = exc
    _summary(instance, console, results, anchors, reports, time.perf_counter() - started)
    return all(isinstance(r, TrailReport) for r in reports.values())


# -- setting up -------------------------------------------------------------------------


def _set_up(instance: Instance, console: Console) -> dict[str, MemberKeys]:
    chain = instance.chain
    admin = instance.keystore.load_or_create(ADMIN_ID).account
    keys = {m.library_id: instance.keystore.load_or_create(m.library_id) for m in MEMBERS}
    for account in [admin, *(k.account for k in keys.values())]:
        chain.fund_from_node(account.address, GAS_MONEY)

    founders = [
        FounderInput(m.library_id, m.tier, m.country, keys[m.library_id].account.address)
        for m in FOUNDERS
    ]
    contracts = ConsortiumContracts.deploy(chain, admin, founders, approvals_required=2)
    instance.record_deployment(contracts)
    console.print(f"  deployed 4 contracts at block {contracts.deployment.block}")

    # The third library joins by the founders' 2-of-2 vote.
    first, second = (keys[m.library_id].account for m in FOUNDERS)
    candidate = FounderInput(
        ADMITTED.library_id,
        ADMITTED.tier,
        ADMITTED.country,
        keys[ADMITTED.library_id].account.address,
    )
    proposal = contracts.propose_admission(first, candidate)
    contracts.approve_admission(first, proposal)
    contracts.approve_admission(second, proposal)
    contracts.execute_admission(second, proposal)
    instance.sync()
    console.print(f"  admitted {ADMITTED.library_id} by proposal {proposal} (2 of 2 approvals)")

    now = instance.clock()
    licences = _issue_licences(instance, keys, now)
    rng = random.Random(2026)
    registered = 0
    for index, member in enumerate(MEMBERS):
        owner = keys[member.library_id]
        items = _resources_for(rng, member, index, licences[member.library_id])
        registered += len(register_resources(instance, owner, items))
    console.print(
        f"  stored {registered} resources sealed and registered them "
        "(sha-256 of the plaintext, CID of what is stored)"
    )
    return keys


def _issue_licences(
    instance: Instance, keys: dict[str, MemberKeys], now: datetime
) -> dict[str, list[int]]:
    """Each member licenses its resources under the consortium's rules.

    XJTU runs a free-delivery campaign now; LZU's starts next month, so its whole-book
    copies are charged; NWU issues a second, short-lived licence that it will revoke.
    """
    day = timedelta(days=1)
    start = now - 30 * day
    until = now + 335 * day
    running = Campaign(f"free-delivery-{now:%Y-%m}", now - 3 * day, now + 25 * day, True)
    later = Campaign(
        f"free-delivery-{(now + 40 * day):%Y-%m}", now + 40 * day, now + 70 * day, True
    )
    fee = Fee(1500, "CNY")
    out: dict[str, list[int]] = {}
    for member, campaign in zip(MEMBERS, (running, later, later), strict=True):
        terms = consortium_terms(
            valid_from=start, valid_until=until, campaigns=(campaign,), fee=fee
        )
        licence_id, _ = issue_licence(instance, keys[member.library_id].account, terms)
        out[member.library_id] = [licence_id]
    nwu = keys[ADMITTED.library_id].account
    extra = consortium_terms(valid_from=start, valid_until=until, campaigns=(later,), fee=fee)
    licence_id, _ = issue_licence(instance, nwu, extra)
    out[ADMITTED.library_id].append(licence_id)
    return out


def _resources_for(
    rng: random.Random, member: DemoMember, index: int, licence_ids: list[int]
) -> list[NewResource]:
    items: list[NewResource] = []
    plan = [("text", 3), ("image", 2), ("audio", 2)]
    for media_type, count in plan:
        for n in range(count):
            titles = TITLES[media_type]
            title = titles[(index * 3 + n) % len(titles)]
            data = _generate(rng, media_type, n)
            # Most resources are licensed; the last text of each member is not (yet).
            unlicensed = media_type == "text" and n == count - 1
            licence = 0 if unlicensed else licence_ids[(n + index) % len(licence_ids)]
            items.append(
                NewResource(
                    data=data,
                    media_type=media_type,
                    metadata={
                        "title": title,
                        "creator": member.name,
                        "date": str(1900 + rng.randrange(120)),
                        "rights": "Consortium document delivery licence",
                        "identifier": f"{member.library_id}/{media_type}/{n + 1}",
                        "language": "zh" if any(ord(c) > 0x2E80 for c in title) else "en",
                    },
                    licence_id=licence,
                )
            )
    return items


def _generate(rng: random.Random, media_type: str, n: int) -> bytes:
    """Real bytes of the right kind: UTF-8 text, a PGM image, a WAV recording."""
    if media_type == "text":
        words = ["manuscript", "敦煌", "ledger", "scroll", "黄河", "archive", "folio", "碑刻"]
        # One larger text per member spans several 256 KiB chunks (a multi-block DAG).
        count = 120_000 if n == 0 else 400 + rng.randrange(4_000)
        return " ".join(rng.choice(words) for _ in range(count)).encode("utf-8")
    if media_type == "image":
        width, height = 160 + 16 * n, 120
        seed = rng.randrange(256)
        pixels = bytes((x * y + seed) & 0xFF for y in range(height) for x in range(width))
        return b"P5\n%d %d\n255\n" % (width, height) + pixels
    rate, seconds, tone = 8_000, 1 + n, 220.0 * (1 + rng.random())
    samples = b"".join(
        struct.pack("<h", int(12_000 * math.sin(2 * math.pi * tone * i / rate)))
        for i in range(rate * seconds)
    )
    header = b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return header + b"data" + struct.pack("<I", len(samples)) + samples


# -- share requests ---------------------------------------------------------------------

_METHODS = [("copy", "part", 40), ("copy", "whole", 30), ("loan", "whole", 10),
            ("secure_electronic", "part", 10), ("print", "part", 10)]  # fmt: skip
_CATEGORIES = [("faculty", 35), ("student", 40), ("staff", 15), ("walk_in", 5), ("external", 5)]
_PURPOSES = [("personal_study", 40), ("research", 30), ("teaching", 20), ("commercial", 10)]
_COUNTRIES = [("CN", 80), ("US", 8), ("DE", 6), ("JP", 6)]


def _pick(rng: random.Random, table: list[tuple[str, int]]) -> str:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def _run_checks(instance: Instance, keys: dict[str, MemberKeys], checks: int) -> list[CheckResult]:
    with instance.db.session() as session:
        resources = list(session.exec(select(ResourceRow).order_by(col(ResourceRow.id))))
        owners = {m.account: m.library_id for m in session.exec(select(MemberRow))}
        revocable = session.exec(
            select(LicenceRow).where(LicenceRow.revoked_block == None)  # noqa: E711
        ).all()
    start_size = sum(instance.access.trail(m.library_id).head().size for m in MEMBERS)
    rng = random.Random(start_size)  # a new round of requests on each run
    nwu_second = max(
        (lic.licence_id for lic in revocable
         if lic.licensor == keys[ADMITTED.library_id].account.address),
        default=None,
    )  # fmt: skip
    results: list[CheckResult] = []
    for i in range(checks):
        if i == checks // 2 and nwu_second is not None and len(revocable) > 3:
            # Halfway through, NWU withdraws its second licence: requests under it now deny.
            revoke_licence(instance, keys[ADMITTED.library_id].account, nwu_second)
        resource = rng.choice(resources)
        supplier = owners[resource.owner]
        others = [m.library_id for m in MEMBERS if m.library_id != supplier]
        requester = rng.choice(others)
        method, scope = rng.choices(
            [(m, s) for m, s, _ in _METHODS], weights=[w for *_, w in _METHODS]
        )[0]
        patron_id = f"{requester}-patron-{rng.randrange(6)}"
        results.append(
            instance.access.check(
                resource_id=resource.id,
                requesting_member=requester,
                patron=keys[requester].pseudonym(patron_id, instance.clock()),
                patron_category=_pick(rng, _CATEGORIES),
                purpose=_pick(rng, _PURPOSES),
                method=method,
                scope=scope,
                destination_country=_pick(rng, _COUNTRIES),
            )
        )
    return results


# -- the summary ------------------------------------------------------------------------


def _summary(
    instance: Instance,
    console: Console,
    results: list[CheckResult],
    anchors: list[tuple[str, AnchoredHead]],
    reports: dict[str, TrailReport | Exception],
    elapsed: float,
) -> None:
    with instance.db.session() as session:
        members = list(session.exec(select(MemberRow).order_by(col(MemberRow.admitted_block))))
        resources = list(session.exec(select(ResourceRow)))
        meta = {m.metadata_hash: m for m in session.exec(select(ResourceMetadataRow))}
        licences = list(session.exec(select(LicenceRow)))
    names = {m.library_id: m.name for m in MEMBERS}

    table = Table(title="Member libraries", title_justify="left")
    for heading in ("library", "name", "tier", "country", "resources", "licences"):
        table.add_column(heading)
    for m in members:
        owned = [r for r in resources if r.owner == m.account]
        issued = [lic for lic in licences if lic.licensor == m.account]
        table.add_row(m.library_id, names.get(m.library_id, ""), str(m.tier), m.country,
                      str(len(owned)), str(len(issued)))  # fmt: skip
    console.print(table)

    kinds = Counter(meta[r.metadata_hash].media_type for r in resources if r.metadata_hash in meta)
    shown = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    console.print(f"Resources: {len(resources)} registered ({shown}); for example")
    for r in sorted(resources, key=lambda r: r.registered_block)[:3]:
        title = meta[r.metadata_hash].title if r.metadata_hash in meta else "?"
        console.print(f"  {title}", soft_wrap=True)
        console.print(f"    sha-256 {r.content_hash[2:18]}…  CID {r.cid}", soft_wrap=True)

    allowed = [r for r in results if r.decision.allowed]
    denied = Counter(str(r.decision.reason) for r in results if not r.decision.allowed)
    fees = sum(r.decision.fee.amount_minor for r in allowed if r.decision.fee)
    table = Table(title=f"Access decisions this run: {len(results)}", title_justify="left")
    table.add_column("decision")
    table.add_column("reason")
    table.add_column("count", justify="right")
    table.add_row("allow", "allowed", str(len(allowed)))
    for reason, n in denied.most_common():
        table.add_row("deny", reason, str(n))
    console.print(table)
    console.print(f"Fees charged on allowed deliveries: {fees / 100:.2f} CNY")

    table = Table(title="Trail heads anchored on chain this run", title_justify="left")
    for heading in ("member", "size", "root", "block", "transaction"):
        table.add_column(heading)
    for library_id, h in anchors:
        table.add_row(library_id, str(h.size), h.root.hex()[:16] + "…", str(h.block),
                      h.tx_hash[:18] + "…")  # fmt: skip
    console.print(table)

    for library_id, report in reports.items():
        if isinstance(report, TrailReport):
            console.print(
                f"[green]trail verified[/green] {library_id}: {report.entries} entries, "
                f"{report.heads} anchored heads, root {report.root.hex()}",
                soft_wrap=True,
            )
        else:
            console.print(f"[red]trail NOT verified[/red] {library_id}: {report}")
    console.print(
        f"Chain at block {instance.chain.block_number()} · data in {instance.config.data_dir} · "
        f"{elapsed:.1f} s"
    )
