"""ledger.contracts: finding and decoding revert data, whichever client raised it."""

from __future__ import annotations

from eth_abi.abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils.crypto import keccak
from evm_support import Deployment
from web3.exceptions import ContractLogicError

from ledger.contracts import ALL_ABIS, all_abis, decode_revert, revert_data_from


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_custom_error_decodes_with_named_checksummed_args() -> None:
    account = "0x" + "ab" * 20
    data = selector("ConsortiumNotMember(address)") + encode(["address"], [account])
    name, args = decode_revert(all_abis(), data) or ("", {})
    assert name == "ConsortiumNotMember"
    assert args == {"account": "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"}


def test_all_abis_alias_is_the_same_helper() -> None:
    assert ALL_ABIS() == all_abis()


def test_error_string_and_panic_decode() -> None:
    error = selector("Error(string)") + encode(["string"], ["nope"])
    panic = selector("Panic(uint256)") + encode(["uint256"], [0x11])
    assert decode_revert([], error) == ("Error", {"message": "nope"})
    assert decode_revert([], panic) == ("Panic", {"code": 0x11})


def test_unknown_selector_short_data_and_garbage_decode_to_none() -> None:
    assert decode_revert(all_abis(), b"\xde\xad\xbe\xef" + b"\x00" * 32) is None
    assert decode_revert(all_abis(), b"\x01\x02") is None
    assert decode_revert(all_abis(), selector("ConsortiumNotMember(address)") + b"\x01") is None


def test_revert_data_from_a_node_error_reads_its_hex_data() -> None:
    data = selector("TrailAnchorEmptyRoot()")
    exc = ContractLogicError("execution reverted", data="0x" + data.hex())
    assert revert_data_from(exc) == data


def test_revert_data_from_a_plain_reason_is_re_encoded_as_error_string() -> None:
    data = revert_data_from(TransactionFailed("execution reverted: out of stock"))
    assert decode_revert([], data or b"") == ("Error", {"message": "out of stock"})


def test_revert_data_from_an_unrelated_exception_is_none() -> None:
    assert revert_data_from(ValueError("boom")) is None


def test_revert_data_survives_web3_mistaking_a_string_error_for_a_reason(
    d: Deployment,
) -> None:
    # web3's eth-tester provider decodes ConsortiumLibraryIdTaken(string) as a reason string
    # during gas estimation; the raw bytes are still on the chained exception.
    fn = d.consortium.functions.proposeAdmission(("CN-A", 1, b"CN", d.spare))
    try:
        fn.transact({"from": d.a})
    except TransactionFailed as exc:
        assert str(exc) == "execution reverted: CN-A"
        assert decode_revert(all_abis(), revert_data_from(exc) or b"") == (
            "ConsortiumLibraryIdTaken",
            {"libraryId": "CN-A"},
        )
    else:
        raise AssertionError("proposeAdmission should have reverted")


def test_revert_data_from_eth_call_is_decoded(d: Deployment) -> None:
    try:
        d.consortium.functions.accountOf("XX").call()
    except TransactionFailed as exc:
        decoded = decode_revert(all_abis(), revert_data_from(exc) or b"")
        assert decoded == ("ConsortiumUnknownLibrary", {"libraryId": "XX"})
    else:
        raise AssertionError("accountOf should have reverted")
