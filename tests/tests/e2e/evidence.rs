//! Evidence with the real binaries: `countersign evidence` (the approver's side) and
//! `countersign-gateway evidence` write a bundle for an approval with a match code and for a
//! denial, `countersign verify-evidence` checks each
//! offline (the assertions against the passkey records included), and so does the
//! second-language verifier (tests/conformance, Python, written from docs/protocol.md alone),
//! which also checks `countersign-gateway audit export`. A one-byte
//! change makes both fail, naming the part.

use std::process::Command;

use countersign_test_support::{bin, countersign, GatewayProcess};

use crate::common::{conformance, fingerprint_of, said};

#[test]
fn bundles_from_the_real_binaries_verify_in_rust_and_in_python() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(&tmp.path().join("gateway"));
    let token = gw.admin(&["token", "create", "ci-bot"]);
    let link = gw.admin(&["invite", "alice@example.com"]);
    let fp = fingerprint_of(&link);
    let alice = tmp.path().join("alice");
    let soft = |args: &[&str]| {
        let mut all = vec!["--authenticator", "soft"];
        all.extend_from_slice(args);
        countersign(&alice, &all)
    };
    assert!(soft(&["pair", &link]).status.success());

    let request = |summary: &str| {
        let out = Command::new(bin("countersign-gateway"))
            .args(["request", "--gateway", gw.url.as_str(), "--token", &token])
            .args(["--action", "sql.exec", "--resource", "prod-db"])
            .args(["--summary", summary, "--reason", "cleanup"])
            .args([
                "--approver",
                "alice@example.com",
                "--require-match",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let first = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap()
            .to_owned();
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["match_code"].as_str().unwrap().to_owned(),
        )
    };
    let (approved, code) = request("truncate sessions");
    let out = soft(&["approve", &approved, "--match-code", &code]);
    assert!(out.status.success(), "{out:?}");
    let (denied, _) = request("drop sessions");
    let out = countersign(&alice, &["deny", &denied, "--reason", "change freeze"]);
    assert!(out.status.success(), "{out:?}");

    let mut key = String::new();
    for (n, (id, state)) in [(&approved, "approved"), (&denied, "denied")]
        .into_iter()
        .enumerate()
    {
        let file = tmp.path().join(format!("{id}.json"));
        if n == 0 {
            // From the approver's side: fetched with the device's authorization and checked
            // against the pinned key before it is written.
            let out = countersign(&alice, &["evidence", id, "-o", file.to_str().unwrap()]);
            assert!(out.status.success(), "{}", said(&out));
            assert!(said(&out).contains("verified against the pinned gateway key"));
        } else {
            gw.admin(&["evidence", id, "-o", file.to_str().unwrap()]);
        }
        let out = countersign(
            &alice,
            &["verify-evidence", file.to_str().unwrap(), "--gateway", &fp],
        );
        assert!(out.status.success(), "{}", said(&out));
        assert!(said(&out).contains(state), "{}", said(&out));
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        key = bundle["gateway_key"].as_str().unwrap().to_owned();
        if n == 0 {
            // The device sent its assertion as WebAuthn Level 3's AuthenticationResponseJSON
            // (protocol.md 3.25), and the passkey's registration as RegistrationResponseJSON.
            let a = &bundle["decisions"][0]["decision"]["body"]["assertion"];
            let mut members: Vec<&str> =
                a.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            members.sort_unstable();
            assert_eq!(
                members,
                [
                    "authenticatorAttachment",
                    "clientExtensionResults",
                    "id",
                    "rawId",
                    "response",
                    "type"
                ],
                "{a}"
            );
            let r = &bundle["passkeys"][0]["registration"]["response"];
            assert_eq!(r["publicKeyAlgorithm"], -7, "{r}");
            assert!(r["authenticatorData"].is_string(), "{r}");
        }
        let out = conformance(&["evidence", file.to_str().unwrap(), &fp], &key);
        assert!(out.status.success(), "{}", said(&out));
        assert!(said(&out).contains(state), "{}", said(&out));

        // One character of the summary changed: both refuse, naming the request.
        let mut changed = bundle.clone();
        let summary = changed["request"]["body"]["summary"]
            .as_str()
            .unwrap()
            .to_owned();
        changed["request"]["body"]["summary"] = format!("X{}", &summary[1..]).into();
        let bad = tmp.path().join(format!("{id}-changed.json"));
        std::fs::write(&bad, serde_json::to_vec(&changed).unwrap()).unwrap();
        let out = countersign(
            &alice,
            &["verify-evidence", bad.to_str().unwrap(), "--gateway", &fp],
        );
        assert!(!out.status.success());
        assert!(said(&out).contains("request:"), "{}", said(&out));
        let out = conformance(&["evidence", bad.to_str().unwrap(), &fp], &key);
        assert_eq!(out.status.code(), Some(1), "{}", said(&out));
        assert!(said(&out).contains("request:"), "{}", said(&out));

        // A proof hash changed: the log entry is named.
        let mut changed = bundle.clone();
        let proof = changed["log"]["entries"][0]["proof"][0]
            .as_str()
            .unwrap()
            .to_owned();
        let flipped = if proof.starts_with('A') { "B" } else { "A" };
        changed["log"]["entries"][0]["proof"][0] = format!("{flipped}{}", &proof[1..]).into();
        std::fs::write(&bad, serde_json::to_vec(&changed).unwrap()).unwrap();
        let out = conformance(&["evidence", bad.to_str().unwrap(), &fp], &key);
        assert_eq!(out.status.code(), Some(1), "{}", said(&out));
        assert!(said(&out).contains("log.entries[0]"), "{}", said(&out));
        let out = countersign(
            &alice,
            &["verify-evidence", bad.to_str().unwrap(), "--gateway", &fp],
        );
        assert!(said(&out).contains("log.entries[0]"), "{}", said(&out));
        // Another fingerprint: refused.
        let out = conformance(&["evidence", file.to_str().unwrap(), &"0".repeat(64)], &key);
        assert!(said(&out).contains("gateway_key"), "{}", said(&out));
    }

    // The whole log, exported with its checkpoint: the chain and the tree verify in Python;
    // an entry edited does not.
    let export = tmp.path().join("log.jsonl");
    gw.admin(&["audit", "export", "-o", export.to_str().unwrap()]);
    let out = conformance(&["export", export.to_str().unwrap(), &fp], &key);
    assert!(out.status.success(), "{}", said(&out));
    let text = std::fs::read_to_string(&export).unwrap();
    let edited = text.replacen("\"deny\"", "\"approve\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&export, edited).unwrap();
    let out = conformance(&["export", export.to_str().unwrap(), &fp], &key);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(gw.admin(&["audit", "verify"]).contains("matches the tree"));
}
