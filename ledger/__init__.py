"""libshare's core: content ids, Merkle trail, licences, chain client and storage.

``ledger`` imports no web framework; the FastAPI service and the command line live in
``api`` and call into it. One concept per module:

pure core (no I/O)
    ``types`` byte types · ``errors`` the error hierarchy · ``cid`` Kubo-identical CIDs ·
    ``merkle`` RFC 9162 trees and proofs · ``licence_terms``, ``licence``,
    ``licence_json`` the licence profile, its evaluation and canonical JSON ·
    ``audit`` trail verification against anchored heads
shells (I/O)
    ``embedded`` the persistent in-process EVM · ``chain`` signing and sending ·
    ``contracts`` compiled artifacts and revert decoding · ``onchain`` typed contract
    calls · ``store`` SQL tables · ``indexer`` contract events into SQL · ``trail`` the
    SQL-backed Merkle log · ``keys`` keystore v3 keys and patron pseudonyms
services
    ``instance`` an opened data dir · ``access`` the access check ·
    ``registration`` resources and licences · ``anchoring`` anchoring and verifying trails
"""

__version__ = "0.1.0"
