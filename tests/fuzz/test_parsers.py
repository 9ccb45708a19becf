"""Fuzz every parser that takes untrusted bytes; see conftest.py for the budget and oracle."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.audit.checkpoint import Checkpoint, NoteKey, sign_checkpoint, verify_checkpoint
from exchange.errors import ExchangeError
from exchange.member.iocs import parse_ioc_text
from exchange.model.envelope import parse_envelope
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.model.pattern import check_pattern
from exchange.model.stix import validate_object
from exchange.model.stixtypes import TYPE_SPECS
from exchange.policy.load import parse_policies, read_policy_files
from exchange.signing.keys import generate
from exchange.signing.published import read_registry
from tests.unit.model.stix_strategies import mutated, stix_objects
from tests.unit.model.strategies import patterns

FUZZ = settings.get_profile("cx-fuzz")
HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
REAL = HERE.parents[2] / "shared" / "data" / "real"
POLICIES = HERE.parents[1] / "policies"
LIMITS = Limits()


def corpus(target: str) -> list[Any]:
    files = sorted((CORPUS / target).iterdir())
    assert files, f"the corpus of {target} is empty"
    return [pytest.param(f.read_bytes(), id=f.name) for f in files]


def clean(parse: Callable[[bytes], object], data: bytes) -> object | None:
    """Run one parser on one input: its value, None for a clear refusal, or a failure."""
    try:
        return parse(data)
    except ExchangeError as e:
        reason = e.reason
    except RecursionError:
        pytest.fail(f"recursion blew up on {data[:120]!r}: add it to the corpus")
    except Exception as e:  # noqa: BLE001 - the oracle: anything else is the defect
        pytest.fail(f"{type(e).__name__}: {e} on {data[:120]!r}: add it to the corpus")
    assert reason.strip(), "a refusal must say what was wrong"
    assert "Traceback" not in reason
    return None


# -- seeds and byte-level mutation -------------------------------------------------------
def _real_json() -> list[bytes]:
    if not REAL.is_dir():  # outside a checkout with shared/ beside it: the corpus only
        return []
    return [p.read_bytes() for p in sorted(REAL.rglob("*.json")) if p.stat().st_size < 120_000]


SEEDS_JSON = _real_json() + [p.read_bytes() for p in sorted((CORPUS / "json").iterdir())]


def _real_objects() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for data in _real_json():
        document = json.loads(data)
        if isinstance(document, dict) and isinstance(document.get("objects"), list):
            out.extend(o for o in document["objects"][:40] if isinstance(o, dict))
    return out


REAL_OBJECTS = _real_objects()


@st.composite
def mutated_bytes(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed damaged the ways files and attackers damage them, a few times over."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            data.extend(draw(st.binary(min_size=1, max_size=8)))
            continue
        at = draw(st.integers(0, len(data) - 1))
        match draw(st.sampled_from(["flip", "cut", "insert", "repeat", "splice", "number"])):
            case "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            case "cut":
                del data[at:at + draw(st.integers(1, 64))]
            case "insert":
                data[at:at] = draw(st.sampled_from(
                    [b"[", b"{", b'"', b"\\", b"\\u0000", b"\\ud800", b"1e17", b"-0", b"NaN",
                     b",", b"\xff", b"\x00", b"'", b"OR [", b"\n"]))
            case "repeat":
                piece = bytes(data[at:at + draw(st.integers(1, 16))])
                data[at:at] = piece * draw(st.integers(2, 200))
            case "splice":
                other = draw(st.sampled_from(seeds))
                start = draw(st.integers(0, max(0, len(other) - 1)))
                data[at:] = other[start:start + draw(st.integers(1, 512))]
            case _:
                data[at:at] = draw(st.sampled_from(
                    [b"9007199254740993", b"1E+308", b"-1e-400", b"123456789012345678901234.5",
                     b"0.1000000000000000055511151231257827", b"-9007199254740992.0"]))
    return bytes(data)


# -- JSON and envelopes -------------------------------------------------------------------
def _json_round_trip(data: bytes) -> object:
    value = parse_json(data, LIMITS)
    canonical = rfc8785.dumps(value)  # what the node would store
    assert rfc8785.dumps(parse_json(canonical, LIMITS)) == canonical, data[:200]
    return value


@pytest.mark.parametrize("data", corpus("json"))
def test_json_corpus(data: bytes) -> None:
    clean(_json_round_trip, data)


@settings(FUZZ)
@given(mutated_bytes(SEEDS_JSON))
def test_json_mutations(data: bytes) -> None:
    clean(_json_round_trip, data)
    clean(lambda d: parse_envelope(d, LIMITS), data)


# -- STIX objects -------------------------------------------------------------------------
def _validate(data: bytes) -> object:
    candidate = parse_json(data, LIMITS)
    obj = validate_object(candidate, LIMITS)
    # What is accepted is stored as canonical bytes and served; it must validate again
    # to the very same bytes (a stored object any reader can take back).
    again = validate_object(parse_json(obj.canonical, LIMITS), LIMITS)
    assert again.canonical == obj.canonical
    return obj


@pytest.mark.parametrize("data", corpus("stix"))
def test_stix_corpus(data: bytes) -> None:
    clean(_validate, data)


TABLED = [o for o in REAL_OBJECTS if o.get("type") in TYPE_SPECS]


@settings(FUZZ)
@given(st.integers(0, max(0, len(TABLED) - 1)).flatmap(lambda i: mutated(TABLED[i])))
def test_real_objects_mutated(obj: dict[str, Any]) -> None:
    clean(_validate, json.dumps(obj).encode())


@settings(FUZZ)
@given(st.sampled_from(["indicator", "identity", "relationship", "report", "location",
                        "file", "ipv4-addr", "domain-name", "url", "marking-definition",
                        "observed-data", "sighting", "malware"]).flatmap(stix_objects)
       .flatmap(mutated))
def test_generated_objects_mutated(obj: dict[str, Any]) -> None:
    clean(_validate, json.dumps(obj).encode())


@settings(FUZZ)
@given(mutated_bytes([json.dumps(o).encode() for o in REAL_OBJECTS[:200]]
                     or [b'{"type": "indicator"}']))
def test_real_objects_damaged_at_the_byte_level(data: bytes) -> None:
    clean(_validate, data)


# -- patterns -----------------------------------------------------------------------------
def _pattern(data: bytes) -> object:
    check_pattern(data.decode("utf-8", errors="replace"), LIMITS)
    return True


@pytest.mark.parametrize("data", corpus("pattern"))
def test_pattern_corpus(data: bytes) -> None:
    clean(_pattern, data)


@settings(FUZZ)
@given(patterns(noisy=True))
def test_noisy_patterns(pattern: str) -> None:
    clean(_pattern, pattern.encode())


# -- IOC lists and CSV --------------------------------------------------------------------
def _iocs(data: bytes) -> object:
    text = data.decode("utf-8", errors="replace")
    for fmt in ("auto", "list", "csv"):
        try:
            parse_ioc_text(text, fmt=fmt)  # type: ignore[arg-type]
        except ExchangeError:
            continue
    return True


@pytest.mark.parametrize("data", corpus("ioc"))
def test_ioc_corpus(data: bytes) -> None:
    clean(_iocs, data)


@settings(FUZZ)
@given(mutated_bytes([p.read_bytes() for p in sorted((CORPUS / "ioc").iterdir())]))
def test_ioc_mutations(data: bytes) -> None:
    clean(_iocs, data)


# -- policy files -------------------------------------------------------------------------
SHIPPED_POLICY = read_policy_files(POLICIES)


def _policy_with(name: str) -> Callable[[bytes], object]:
    def parse(data: bytes) -> object:
        return parse_policies({**SHIPPED_POLICY, name: data})
    return parse


@pytest.mark.parametrize("data", corpus("policy"))
def test_policy_corpus(data: bytes) -> None:
    for name in SHIPPED_POLICY:
        clean(_policy_with(name), data)


@settings(FUZZ)
@given(st.sampled_from(sorted(SHIPPED_POLICY)).flatmap(
    lambda name: st.tuples(st.just(name), mutated_bytes([SHIPPED_POLICY[name]]))))
def test_policy_mutations(case: tuple[str, bytes]) -> None:
    name, data = case
    clean(_policy_with(name), data)


# -- the published registry and signed notes ----------------------------------------------
@pytest.mark.parametrize("data", corpus("registry"))
def test_registry_corpus(data: bytes) -> None:
    clean(read_registry, data)


@settings(FUZZ)
@given(mutated_bytes([p.read_bytes() for p in sorted((CORPUS / "registry").iterdir())]))
def test_registry_mutations(data: bytes) -> None:
    clean(read_registry, data)


NOTE_SIGNER = generate("Ed25519")
NOTE_KEY = NoteKey.of("audit.cx-fuzz.example/log", NOTE_SIGNER)
SIGNED = sign_checkpoint(Checkpoint("audit.cx-fuzz.example/log", 12, b"\x07" * 32),
                         NOTE_SIGNER, "audit.cx-fuzz.example/log").encode()
NOTE_SEEDS = [SIGNED, NOTE_KEY.verifier().encode(),
              *(p.read_bytes() for p in sorted((CORPUS / "note").iterdir()))]


def _note(data: bytes) -> object:
    text = data.decode("utf-8", errors="replace")
    clean(lambda _: Checkpoint.parse(text), data)
    clean(lambda _: NoteKey.parse(text.strip()), data)
    return verify_checkpoint(text, [NOTE_KEY])


def test_the_note_seed_verifies() -> None:
    assert verify_checkpoint(SIGNED.decode(), [NOTE_KEY]).size == 12


@pytest.mark.parametrize("data", corpus("note"))
def test_note_corpus(data: bytes) -> None:
    clean(_note, data)


@settings(FUZZ)
@given(mutated_bytes(NOTE_SEEDS))
def test_note_mutations(data: bytes) -> None:
    clean(_note, data)
