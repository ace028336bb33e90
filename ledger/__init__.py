"""libshare's core: content ids, Merkle trail, licences, chain client and storage.

``ledger`` imports no web framework; the FastAPI service and the command line live in
``api`` and call into it. One concept per module:

pure core (no I/O)
    ``types`` byte types · ``errors`` the error hierarchy · ``cid`` Kubo-identical CIDs ·
    ``unixfs`` dag-pb and UnixFS decoding · ``merkle`` RFC 9162 trees and proofs ·
    ``licence_terms``, ``licence``, ``licence_json`` the licence profile, its evaluation
    and canonical JSON · ``odrl``, ``odrl_read``, ``odrl_vocab`` ODRL 2.2 export and import ·
    ``audit`` trail verification against anchored heads · ``sealed`` streaming encryption ·
    ``federation`` EIP-712 signed share requests and answers · ``reconcile`` federated
    answers matched to receipts across two trails
shells (I/O)
    ``embedded`` the persistent in-process EVM · ``chain`` signing and sending ·
    ``contracts`` compiled artifacts and revert decoding · ``onchain`` typed contract
    calls · ``outbox`` durable chain writes · ``indexer`` contract events into SQL ·
    ``store`` SQL tables · ``migrations`` their Alembic revisions · ``sqlfast`` plain SQL
    for the decision writer's hot statements · ``trail`` the
    SQL-backed Merkle log · ``content`` the content store interface, ``blockstore``
    (local) and ``kubo`` (IPFS node) · ``car`` CAR v1 ·
    ``keys`` keystore v3 keys and patron pseudonyms · ``apikeys`` API keys
services
    ``instance`` an opened data dir · ``access`` the access check (group commit) ·
    ``delivery`` content after an allowed check · ``registration`` resources and
    licences · ``anchoring`` anchoring and verifying trails · ``trail_export`` audit
    export and offline verification · ``federation_service`` answering other members'
    signed requests and borrowing from them · ``status`` an instance at a glance
"""

__version__ = "0.1.0"
