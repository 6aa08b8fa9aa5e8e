//! Secrets stay out of logs and outputs, and data files are private.

use std::process::{Command, Stdio};

use countersign_test_support::{bin, GatewayProcess};

/// No secret reaches a log or an output it does not belong in. The real binaries run a pairing,
/// a request and an approval with every log at `trace`; afterwards neither the gateway's log nor
/// anything the approver CLI or the requester printed contains the device key (hex or base64),
/// the requester token or the pairing code. Data files are private: the data directories are
/// 0700 and every file in them 0600 or stricter.
#[test]
fn no_secret_reaches_a_log_and_data_files_are_private() {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let gw_log = tmp.path().join("gateway.log");
    let gw_data = tmp.path().join("gateway");
    let gw = GatewayProcess::start_with_log(
        &gw_data,
        "trace",
        Stdio::from(std::fs::File::create(&gw_log).unwrap()),
    );
    let token = gw.admin(&["token", "create", "ci-bot"]);
    let link = gw.admin(&["invite", "alice@example.com"]);
    let code = countersign_protocol::PairingLink::parse(&link)
        .unwrap()
        .code;
    let alice = tmp.path().join("alice");
    let traced = |args: &[&str]| {
        Command::new(bin("countersign"))
            .arg("--data-dir")
            .arg(&alice)
            .args(args)
            .env("COUNTERSIGN_LOG", "trace")
            .output()
            .unwrap()
    };
    let mut said = String::new();
    let mut keep = |out: &std::process::Output| {
        assert!(out.status.success(), "{out:?}");
        said.push_str(&String::from_utf8_lossy(&out.stdout));
        said.push_str(&String::from_utf8_lossy(&out.stderr));
    };
    keep(&traced(&["--authenticator", "soft", "pair", &link]));
    let created = Command::new(bin("countersign-gateway"))
        .args(["request", "--gateway", gw.url.as_str(), "--token", &token])
        .args([
            "--action",
            "deploy",
            "--resource",
            "prod",
            "--summary",
            "logs",
        ])
        .args(["--approver", "alice@example.com", "--json"])
        .env("COUNTERSIGN_LOG", "trace")
        .output()
        .unwrap();
    keep(&created);
    let id = serde_json::from_slice::<serde_json::Value>(
        created.stdout.split(|b| *b == b'\n').next().unwrap(),
    )
    .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    keep(&traced(&["--authenticator", "soft", "approve", &id]));
    drop(gw);

    let seed = countersign_test_support::device_seed(&alice);
    let secrets = [
        ("device key (hex)", hex::encode(&seed)),
        (
            "device key (base64url)",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&seed),
        ),
        (
            "device key (base64)",
            base64::engine::general_purpose::STANDARD.encode(&seed),
        ),
        ("requester token", token.clone()),
        ("pairing code", code.clone()),
    ];
    let gateway_log = std::fs::read_to_string(&gw_log).unwrap();
    assert!(
        gateway_log.len() > 1000,
        "the gateway logged little: {gateway_log}"
    );
    for (what, secret) in &secrets {
        assert!(
            !gateway_log.contains(secret.as_str()),
            "{what} in the gateway's log"
        );
        assert!(
            !said.contains(secret.as_str()),
            "{what} in the approver's or requester's output"
        );
    }

    for dir in [&alice, &gw_data] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_type().unwrap().is_file() {
                continue;
            }
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            // serving-url is the one public file: the address the gateway listens on.
            if entry.file_name() == "serving-url" {
                continue;
            }
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
        }
    }
}
