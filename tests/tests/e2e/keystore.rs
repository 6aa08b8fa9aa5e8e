//! Where the device key lives: the Secret Service when one answers, an owner-only file when none
//! does.

use std::process::Command;

use countersign_test_support::{bin, countersign, error_code, files_of, TestGateway};

/// The device key lives in the Secret Service when one answers on the session bus (`make test`
/// starts gnome-keyring on its private bus), and in an owner-only file when none does; the data
/// directory never holds the seed of a key kept in the Secret Service, and that key is the one
/// the gateway registers at pairing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_key_lives_in_the_secret_service_when_there_is_one() {
    use countersign_test_support::{device_seed, secret_service_account, secret_service_available};
    if !secret_service_available() {
        assert!(
            std::env::var_os("COUNTERSIGN_REQUIRE_SECRET_SERVICE").is_none(),
            "COUNTERSIGN_REQUIRE_SECRET_SERVICE is set but no Secret Service answers"
        );
        eprintln!("SKIPPED: no Secret Service on the session bus (make test starts one)");
        return;
    }
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("approver");
    let link = gw.invite("alice@example.com").to_string();
    succeeded(&countersign(
        &data,
        &["--authenticator", "soft", "pair", &link],
    ));

    // In the Secret Service: no device.key, a private reference, the seed nowhere on disk.
    assert!(!data.join("device.key").exists());
    let account = secret_service_account(&data).expect("device-key.ref");
    assert_eq!(mode_of(&data.join("device-key.ref")), 0o600);
    let seed = device_seed(&data);
    assert_eq!(seed.len(), 32);
    for (name, bytes) in files_of(&data) {
        assert!(
            !bytes.windows(seed.len()).any(|w| w == seed.as_slice()),
            "{name} holds the device key seed"
        );
    }
    // The gateway registered exactly that key.
    let key = countersign_protocol::KeyPair::from_seed(&seed.clone().try_into().unwrap());
    let db = rusqlite::Connection::open(gw.dir.path().join("gateway/gateway.db")).unwrap();
    let registered: Vec<String> = db
        .prepare("SELECT public_key FROM devices")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(registered, vec![key.public().to_base64()]);
    // And it is found again by the next run.
    let out = countersign(&data, &["gateways"]);
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&format!(
            "device key: Secret Service item countersign/{account}"
        )),
        "{listed}"
    );

    // No Secret Service (no session bus at all): an owner-only file, and `secret-service`
    // insisted on is a clear error.
    let plain = dir.path().join("no-bus");
    succeeded(&without_bus(&plain, &["gateways"]));
    assert!(!plain.join("device-key.ref").exists());
    assert_eq!(mode_of(&plain.join("device.key")), 0o600);
    let insist = dir.path().join("insist");
    let out = without_bus(
        &insist,
        &["--json", "--key-store", "secret-service", "gateways"],
    );
    assert!(!out.status.success());
    assert_eq!(error_code(&out), "key_store_unavailable");
    assert!(!insist.join("device.key").exists(), "no silent fallback");
}

/// `countersign --data-dir DATA ARGS` with no session bus reachable (so no Secret Service).
fn without_bus(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("countersign"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap()
}

fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
