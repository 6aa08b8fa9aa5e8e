#!/usr/bin/env python3
"""An independent verifier of Countersign evidence bundles and gateway log exports.

Written from docs/protocol.md alone (sections 2, 3, 5a, 9.1, 9.6 and 9.7), with no project
code: RFC 8785 canonical JSON from the `rfc8785` package, Ed25519 from `cryptography`, COSE keys
and their signatures (WebAuthn assertions) from `fido2`, SHA-256 and the RFC 9162 Merkle tree
from the standard library.

    verify_evidence.py evidence BUNDLE.json GATEWAY_FINGERPRINT
    verify_evidence.py export EXPORT.jsonl GATEWAY_FINGERPRINT
    verify_evidence.py approver-export EXPORT.jsonl DEVICE_FINGERPRINT [GATEWAY_FINGERPRINT]

Exits 0 and prints what it verified, or exits 1 naming the first thing that fails.
"""

import base64
import hashlib
import json
import re
import sys

import rfc8785
from fido2 import cbor
from fido2.cose import CoseKey
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Failed(Exception):
    def __init__(self, what, problem):
        super().__init__(f"{what}: {problem}")
        self.what = what


def b64u(s, what):
    """Strict unpadded base64url (protocol.md 1.2)."""
    if not isinstance(s, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", s):
        raise Failed(what, "not base64url")
    raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != s:
        raise Failed(what, "non-canonical base64url")
    return raw


def b64std(s, what):
    """Standard base64 with padding (checkpoints and proofs, protocol.md 9.6)."""
    try:
        raw = base64.b64decode(s, validate=True)
    except Exception:
        raise Failed(what, "not base64")
    if base64.b64encode(raw).decode() != s:
        raise Failed(what, "non-canonical base64")
    return raw


def no_duplicates(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def signing_message(domain, body):
    return domain.encode() + b"\x00" + rfc8785.dumps(body)


def digest(domain, body):
    return hashlib.sha256(signing_message(domain, body)).hexdigest()


def verify_signed(signed, domain, key, what):
    """Signed<T> (protocol.md 2.5): {"body", "signature"} over domain || 0x00 || JCS(body)."""
    if not isinstance(signed, dict) or set(signed) != {"body", "signature"}:
        raise Failed(what, "not a Signed<T>")
    signature = b64u(signed["signature"], what)
    if len(signature) != 64:
        raise Failed(what, "the signature is not 64 bytes")
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, signing_message(domain, signed["body"]))
    except InvalidSignature:
        raise Failed(what, "the signature does not verify")
    return signed["body"], digest(domain, signed["body"])


def key_of(s, what):
    raw = b64u(s, what)
    if len(raw) != 32:
        raise Failed(what, "a key is 32 bytes")
    return raw


# ---- WebAuthn assertions (protocol.md 3.5, 5a, 9.7)

def b64u_lenient(s, what):
    if not isinstance(s, str):
        raise Failed(what, "missing")
    return base64.urlsafe_b64decode(s.rstrip("=") + "=" * (-len(s.rstrip("=")) % 4))


def verify_assertion(assertion, record, what):
    """W3C WebAuthn Level 3, verifying an authentication assertion, from signed data alone."""
    if b64u_lenient(assertion.get("rawId"), what) != b64u(record["credential_id"], what):
        raise Failed(what, "the assertion names another credential")
    response = assertion["response"]
    client_data = b64u_lenient(response.get("clientDataJSON"), what)
    auth_data = b64u_lenient(response.get("authenticatorData"), what)
    signature = b64u_lenient(response.get("signature"), what)
    cd = json.loads(client_data)
    if cd.get("type") != "webauthn.get":
        raise Failed(what, "the client data is not of an authentication")
    if cd.get("origin") != record["origin"] or cd.get("crossOrigin") is True:
        raise Failed(what, "the client data names another origin")
    if len(auth_data) < 37 or auth_data[:32] != hashlib.sha256(record["rp_id"].encode()).digest():
        raise Failed(what, "the authenticator data is for another relying party")
    if not auth_data[32] & 0x01 or not auth_data[32] & 0x04:
        raise Failed(what, "the authenticator data does not show user presence and verification")
    key = CoseKey.parse(cbor.decode(b64u(record["public_key"], what)))
    try:
        key.verify(auth_data + hashlib.sha256(client_data).digest(), signature)
    except Exception:
        raise Failed(what, "the WebAuthn assertion does not verify: the passkey's signature does not verify")
    return cd.get("challenge")


# ---- the gateway log (protocol.md 9.6)

def leaf_hash(entry):
    data = b"countersign/v1/audit-entry\x00" + rfc8785.dumps(entry)
    return hashlib.sha256(b"\x00" + data).digest()


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """RFC 9162 2.1.1, over leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def check_inclusion(index, size, leaf, proof, root, what):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        raise Failed(what, "index outside the tree")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Failed(what, "the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise Failed(what, "the inclusion proof does not lead to the checkpoint's root")


def verify_checkpoint(note, gateway_key, fingerprint):
    """A C2SP tlog-checkpoint signed note under the gateway key (protocol.md 9.6)."""
    what = "log.checkpoint"
    if not isinstance(note, str) or "\n\n" not in note or not note.endswith("\n"):
        raise Failed(what, "not a signed note")
    text, sigs = note.split("\n\n", 1)
    text += "\n"
    lines = text.split("\n")[:-1]
    name = f"countersign/log/{fingerprint}"
    if len(lines) != 3 or lines[0] != name:
        raise Failed(what, f"the checkpoint is not the three lines of {name}")
    if not re.fullmatch(r"0|[1-9][0-9]*", lines[1]):
        raise Failed(what, "the size is not a decimal")
    size = int(lines[1])
    root = b64std(lines[2], what)
    if len(root) != 32:
        raise Failed(what, "the root is not 32 bytes")
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x01" + gateway_key).digest()[:4]
    good = False
    for line in sigs.rstrip("\n").split("\n"):
        m = re.fullmatch("\u2014 (\\S+) (\\S+)", line)
        if not m:
            raise Failed(what, f"not a signature line: {line!r}")
        if m.group(1) != name:
            continue  # another key's (a witness's) signature
        raw = b64std(m.group(2), what)
        if raw[:4] != key_id or len(raw) != 68:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(gateway_key).verify(raw[4:], text.encode())
        except InvalidSignature:
            raise Failed(what, "the gateway's signature does not verify")
        good = True
    if not good:
        raise Failed(what, "no signature by the gateway key")
    return size, root


def verify_cosignatures(note, witnesses, gateway_key):
    """Each witness's pairing record, and its tlog-cosignature/v1 line on the checkpoint
    (protocol.md 9.8). Returns the witnesses' device ids."""
    text = note.split("\n\n", 1)[0] + "\n"
    lines = {}
    for line in note.split("\n\n", 1)[1].rstrip("\n").split("\n"):
        m = re.fullmatch("\u2014 (\\S+) (\\S+)", line)
        if m:
            lines.setdefault(m.group(1), []).append(m.group(2))
    ids = []
    for i, w in enumerate(witnesses):
        what = f"log.witnesses[{i}]"
        body, _ = verify_signed(w, "countersign/v2/paired", gateway_key, what)
        key = key_of(body["device_key"], what)
        name = f"countersign/device/{hashlib.sha256(key).hexdigest()}"
        key_id = hashlib.sha256(name.encode() + b"\n" + b"\x04" + key).digest()[:4]
        good = False
        for sig in lines.get(name, []):
            raw = b64std(sig, what)
            if len(raw) != 76 or raw[:4] != key_id:
                continue
            timestamp = int.from_bytes(raw[4:12], "big")
            message = f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()
            try:
                Ed25519PublicKey.from_public_bytes(key).verify(raw[12:], message)
            except InvalidSignature:
                raise Failed(what, "its cosignature of the checkpoint does not verify")
            good = True
        if not good:
            raise Failed(what, "the checkpoint carries no cosignature by this device")
        ids.append(body["device_id"])
    return ids


# ---- the evidence bundle (protocol.md 9.7)

def verify_evidence(e, fingerprint):
    if e.get("v") != 1:
        raise Failed("v", "not version 1")
    gw = key_of(e["gateway_key"], "gateway_key")
    if hashlib.sha256(gw).hexdigest() != fingerprint:
        raise Failed("gateway_key", "its fingerprint is not the one expected")

    request, request_digest = verify_signed(e["request"], "countersign/v2/request", gw, "request")
    if request["gateway"] != fingerprint:
        raise Failed("request", "it names another gateway")

    status, _ = verify_signed(e["status"], "countersign/v2/status", gw, "status")
    if status["request_id"] != request["id"] or status["request_digest"] != request_digest:
        raise Failed("status", "it is the status of another request")
    # Every status pushed, in seq order, never leaving a final state, ending with `status`.
    by_seq = {}
    final = None
    for i, s in enumerate(e["statuses"]):
        what = f"statuses[{i}]"
        body, _ = verify_signed(s, "countersign/v2/status", gw, what)
        if body["request_id"] != request["id"] or body["request_digest"] != request_digest:
            raise Failed(what, "it is the status of another request")
        if by_seq and body["seq"] <= max(by_seq):
            raise Failed(what, "the statuses are not in increasing seq order")
        if final is not None and body["state"] != final:
            raise Failed(what, "it leaves a final state")
        if body["state"] != "pending":
            final = body["state"]
        by_seq[body["seq"]] = body
    if not e["statuses"] or e["statuses"][-1] != e["status"]:
        raise Failed("statuses", "the last status is not the bundle's status")

    devices = {}
    for i, d in enumerate(e["devices"]):
        body, _ = verify_signed(d, "countersign/v2/paired", gw, f"devices[{i}]")
        devices[body["device_id"]] = body

    records = []
    for i, p in enumerate(e["passkeys"]):
        body, _ = verify_signed(p["record"], "countersign/v2/passkey-record", gw, f"passkeys[{i}]")
        if body["gateway"] != fingerprint:
            raise Failed(f"passkeys[{i}]", "it names another gateway")
        records.append(body)

    decision_digests = []
    for i, d in enumerate(e["decisions"]):
        what = f"decisions[{i}]"
        claimed = d["decision"].get("body", {})
        device = devices.get(claimed.get("device_id"))
        if device is None:
            raise Failed(what, "its device has no pairing record in the bundle")
        if device["approver"] != claimed.get("approver"):
            raise Failed(what, "its device is paired to another approver")
        body, decision_digest = verify_signed(
            d["decision"], "countersign/v2/decision", key_of(device["device_key"], what), what)
        if body["request_id"] != request["id"] or body["request_digest"] != request_digest:
            raise Failed(what, "it decides another request")
        if body["gateway"] != fingerprint:
            raise Failed(what, "it names another gateway")
        if request.get("match_required") and body["verdict"] == "approve" and body.get("match_code") is None:
            raise Failed(what, "an approval of a request that needs a match code carries none")
        assertion = body.get("assertion")
        if assertion is not None:
            cred = b64u_lenient(assertion.get("rawId"), what)
            record = next((r for r in records if r["approver"] == body["approver"]
                           and b64u(r["credential_id"], what) == cred), None)
            if record is None:
                raise Failed(what, "the passkey of its assertion has no record in the bundle")
            answered = verify_assertion(assertion, record, what)
        rwhat = what + ".receipt"
        receipt, _ = verify_signed(d["receipt"], "countersign/v2/receipt", gw, rwhat)
        # The challenge the assertion answered, signed by the gateway for this request and
        # approver (protocol.md 3.24); receipts from before signed challenges name none.
        named = receipt.get("challenge_digest")
        cwhat = what + ".challenge"
        if assertion is None and (named is not None or d["challenge"] is not None):
            raise Failed(cwhat, "a decision without an assertion answered no challenge")
        if (named is None) != (d["challenge"] is None):
            raise Failed(cwhat, "the receipt and the bundle disagree about the challenge")
        if named is not None:
            challenge, challenge_digest = verify_signed(d["challenge"], "countersign/v2/challenge", gw, cwhat)
            if (challenge["gateway"], challenge["request_id"], challenge["request_digest"],
                    challenge["approver"]) != (fingerprint, request["id"], request_digest, body["approver"]):
                raise Failed(cwhat, "it was not issued by this gateway for this request and approver")
            if challenge_digest != named:
                raise Failed(cwhat, "the receipt names another challenge")
            expected = base64.urlsafe_b64encode(bytes.fromhex(challenge_digest)).rstrip(b"=").decode()
            if answered != expected:
                raise Failed(cwhat, "the assertion answers another WebAuthn challenge")
        if receipt["decision_id"] != body["decision_id"] or receipt["decision_digest"] != decision_digest:
            raise Failed(rwhat, "it accepts another decision")
        if receipt["request_id"] != request["id"] or receipt["request_digest"] != request_digest:
            raise Failed(rwhat, "it names another request")
        if receipt["approver"] != body["approver"] or receipt["verdict"] != body["verdict"]:
            raise Failed(rwhat, "its approver or verdict is not the decision's")
        at = by_seq.get(receipt["status_seq"])
        if at is None or at["state"] != receipt["request_state"]:
            raise Failed(rwhat, "the bundle's status at its status_seq does not bear it out")
        if receipt["status_seq"] > status["seq"]:
            raise Failed(rwhat, "it is at a status after the bundle's")
        decision_digests.append(decision_digest)

    size, root = verify_checkpoint(e["log"]["checkpoint"], gw, fingerprint)
    witnesses = verify_cosignatures(e["log"]["checkpoint"], e["log"]["witnesses"], gw)
    created = False
    accepted = set()
    for i, p in enumerate(e["log"]["entries"]):
        what = f"log.entries[{i}]"
        entry = p["entry"]
        if entry.get("request_id") != request["id"]:
            raise Failed(what, "an entry of another request")
        if entry["seq"] != p["index"] + 1:
            raise Failed(what, "its seq is not its leaf index + 1")
        proof = [b64std(h, what) for h in p["proof"]]
        check_inclusion(p["index"], size, leaf_hash(entry), proof, root, what)
        detail = entry.get("detail") or {}
        # `request_digest` (entries written before the name was unified: `digest`)
        if entry["kind"] == "request.created" and request_digest in (
                detail.get("request_digest"), detail.get("digest")):
            created = True
        if entry["kind"] in ("decision.accepted", "request.revoked"):
            accepted.add(detail.get("decision_digest"))
    if not created:
        raise Failed("log.entries", "no entry records the creation of this request with its digest")
    for i, dd in enumerate(decision_digests):
        if dd not in accepted:
            raise Failed(f"decisions[{i}]", "no log entry records that the gateway accepted it")
    return f"request {request['id']} {status['state']}, {len(decision_digests)} decision(s), " \
           f"{len(e['log']['entries'])} entries in a checkpoint of {size} with " \
           f"{len(witnesses)} witness(es)"


def verify_export(lines, fingerprint, gateway_key):
    """`countersign-gateway audit export`: LogEntry lines, then {"checkpoint": note}."""
    *entries, last = lines
    leaves = []
    prev = "0" * 64
    for i, e in enumerate(entries):
        what = f"entries[{i}]"
        if e["index"] != i or e["entry"]["seq"] != i + 1:
            raise Failed(what, "out of order")
        entry = e["entry"]
        if entry["prev"] != prev:
            raise Failed(what, "the chain is broken")
        prev = hashlib.sha256(b"countersign/v1/audit-entry\x00" + rfc8785.dumps(entry)).hexdigest()
        leaves.append(leaf_hash(entry))
    size, root = verify_checkpoint(last["checkpoint"], gateway_key, fingerprint)
    if size != len(entries) or mth(leaves) != root:
        raise Failed("checkpoint", "it does not sign the tree over the exported entries")
    return f"{size} entries, chain and tree verify"


def verify_approver_export(lines, device_fingerprint, gateway_fingerprint):
    """`countersign audit export` (protocol.md 9.3): entry lines, the device's checkpoint
    lines, then one acknowledgement line per gateway; an export cut back below an
    acknowledged checkpoint fails."""
    entries = [l for l in lines if "entry" in l]
    checkpoints = [l for l in lines if "checkpoint" in l]
    acks = [l for l in lines if "ack" in l]
    if lines != entries + checkpoints + acks:
        raise Failed("export", "entries, then checkpoints, then acknowledgements")
    hashes = []
    prev = "0" * 64
    for i, line in enumerate(entries):
        what = f"entries[{i}]"
        entry = line["entry"]
        if entry["seq"] != i + 1 or entry["prev"] != prev:
            raise Failed(what, "the chain is broken")
        prev = hashlib.sha256(b"countersign/v1/audit-entry\x00" + rfc8785.dumps(entry)).hexdigest()
        if line["hash"] != prev:
            raise Failed(what, "its hash is not the hash of the entry")
        hashes.append(prev)
    if not checkpoints:
        raise Failed("export", "no checkpoint")
    device = key_of(checkpoints[0]["public_key"], "public_key")
    if hashlib.sha256(device).hexdigest() != device_fingerprint:
        raise Failed("public_key", "the device key is not the one expected")
    for i, line in enumerate(checkpoints):
        what = f"checkpoints[{i}]"
        if line["public_key"] != checkpoints[0]["public_key"]:
            raise Failed(what, "another device key")
        cp, _ = verify_signed(line["checkpoint"], "countersign/v1/checkpoint", device, what)
        if cp["signer"] != device_fingerprint:
            raise Failed(what, "it names another signer")
        if cp["seq"] > len(hashes) or (cp["seq"] > 0 and hashes[cp["seq"] - 1] != cp["head"]):
            raise Failed(what, "the chain does not hold the head it signed")
    last, _ = verify_signed(checkpoints[-1]["checkpoint"], "countersign/v1/checkpoint", device, "checkpoints")
    if last["seq"] != len(hashes) or (hashes and last["head"] != hashes[-1]):
        raise Failed("checkpoints", "the last checkpoint does not cover the whole export")
    acked = []
    for i, line in enumerate(acks):
        what = f"acks[{i}]"
        gw = key_of(line["gateway_key"], what)
        fp = hashlib.sha256(gw).hexdigest()
        ack, _ = verify_signed(line["ack"], "countersign/v2/checkpoint-ack", gw, what)
        if ack["gateway"] != fp or ack["signer"] != device_fingerprint:
            raise Failed(what, "it is not this gateway's acknowledgement of this device")
        if ack["seq"] > len(hashes):
            raise Failed(what, f"gateway {fp} acknowledged entry {ack['seq']}, "
                               f"the export ends after {len(hashes)}: it was cut back")
        if ack["seq"] < 1 or hashes[ack["seq"] - 1] != ack["head"]:
            raise Failed(what, "the acknowledged entry is not the export's")
        acked.append(fp)
    if gateway_fingerprint is not None and gateway_fingerprint not in acked:
        raise Failed("acks", f"no acknowledgement by gateway {gateway_fingerprint}")
    return f"{len(hashes)} entries, {len(checkpoints)} checkpoint(s), acknowledged by {len(acked)} gateway(s)"


def main(argv):
    if argv[1:2] == ["approver-export"] and len(argv) in (4, 5):
        try:
            with open(argv[2], encoding="utf-8") as f:
                lines = [json.loads(line, object_pairs_hook=no_duplicates) for line in f if line.strip()]
            print("export verifies:", verify_approver_export(lines, argv[3], argv[4] if len(argv) == 5 else None))
        except Failed as e:
            print(f"does NOT verify: {e}")
            return 1
        except (KeyError, TypeError, ValueError, IndexError) as e:
            print(f"does NOT verify: malformed: {e!r}")
            return 1
        return 0
    if len(argv) != 4 or argv[1] not in ("evidence", "export"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, path, fingerprint = argv[1:]
    try:
        with open(path, encoding="utf-8") as f:
            if mode == "evidence":
                print("evidence verifies:", verify_evidence(json.load(f, object_pairs_hook=no_duplicates), fingerprint))
            else:
                lines = [json.loads(line, object_pairs_hook=no_duplicates) for line in f if line.strip()]
                # The export carries no key: the verifier has the gateway key from pairing; here
                # it is taken from a bundle's `gateway_key` passed in COUNTERSIGN_GATEWAY_KEY.
                import os
                key = key_of(os.environ["COUNTERSIGN_GATEWAY_KEY"], "gateway key")
                if hashlib.sha256(key).hexdigest() != fingerprint:
                    raise Failed("gateway key", "its fingerprint is not the one expected")
                print("export verifies:", verify_export(lines, fingerprint, key))
    except Failed as e:
        print(f"does NOT verify: {e}")
        return 1
    except (KeyError, TypeError, ValueError) as e:
        print(f"does NOT verify: malformed: {e!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
