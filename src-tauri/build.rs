//! Generates the Tauri context and the app-command permissions: each command in
//! `countersign_ipc::COMMANDS` gets an `allow-<command>` permission, and only the permissions
//! listed in `capabilities/main.json` are granted to the window.

/// Keep in step with `countersign_ipc::COMMANDS` (a test checks it).
const COMMANDS: &[&str] = &[
    "list_requests",
    "get_request",
    "approve",
    "deny",
    "report_unexpected",
    "acknowledge",
    "revoke",
    "pair",
    "list_gateways",
    "authenticator_info",
    "audit_list",
    "audit_verify",
    "audit_export",
    "get_settings",
    "set_settings",
    "pending_navigation",
    "quit",
    "key_answer",
    "key_set_pin",
    "passkey_list",
    "passkey_add",
    "passkey_remove",
    "hoop_list",
    "hoop_connect",
    "hoop_disconnect",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .unwrap_or_else(|e| {
        println!("cargo::error={e:#}");
        std::process::exit(1)
    });
}
