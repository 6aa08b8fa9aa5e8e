//! The command line: the global options and the subcommands, as clap parses them. Nothing here
//! runs anything.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "countersign",
    version,
    about = "Countersign approver (headless)"
)]
pub struct Cli {
    /// Where the database, device key and development authenticator live.
    #[arg(long, global = true, env = "COUNTERSIGN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Machine-readable output: one JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,
    /// Passkey authenticator: `usb`, a FIDO2 security key (the default), or `soft`, the
    /// development-mode software authenticator (verifies nobody; for demos and tests), or
    /// `dev-key`, a test harness's key behind `<data dir>/dev-key.sock` (development mode).
    #[arg(long, global = true, env = "COUNTERSIGN_AUTHENTICATOR", value_parser = ["soft", "usb", "dev-key"])]
    pub authenticator: Option<String>,
    /// Read the security key's PIN from standard input instead of the terminal, a line per
    /// ceremony (for scripts; a wrong PIN is not asked again).
    #[arg(long, global = true)]
    pub pin_stdin: bool,
    /// Do not contact gateways first; use the local store only.
    #[arg(long, global = true)]
    pub offline: bool,
    /// Where a new device key is kept: `auto` (the Secret Service when one answers on the
    /// session bus, else an owner-only file), `secret-service` or `file`. An existing key stays
    /// where it is.
    #[arg(long, global = true, env = "COUNTERSIGN_KEY_STORE", default_value = "auto",
          value_parser = ["auto", "secret-service", "file"])]
    pub key_store: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Pair with a gateway using a countersign://pair link.
    Pair {
        link: String,
        /// How this device is named at the gateway (default: the host name).
        #[arg(long)]
        device_name: Option<String>,
    },
    /// List paired gateways and connected hoop gateways, each with its kind.
    Gateways,
    /// Connect another kind of gateway (hoop.dev).
    Connect {
        #[command(subcommand)]
        command: ConnectCommand,
    },
    /// Remove a hoop connection (its id, id prefix, URL or host) and its token.
    Disconnect { connection: String },
    /// Stay connected to every gateway and print requests as they arrive (Ctrl-C to stop).
    Watch,
    /// Fetch every gateway's backlog and send queued decisions, then exit.
    Sync,
    /// List pending requests (or all with --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Show every field of one request.
    Show { id: String },
    /// Approve a request (passkey ceremony).
    Approve {
        id: String,
        /// The code the requester sees, when the request requires number matching.
        #[arg(long)]
        match_code: Option<String>,
        /// Approve even if fields carry hidden or look-alike characters (they are still shown;
        /// without a terminal such a request is otherwise refused).
        #[arg(long)]
        yes: bool,
    },
    /// Deny a request.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// "I did not expect this": deny the request and report it to its gateway, which blocks
    /// its requester from you (their pending requests to you are denied, new ones refused).
    Report { id: String },
    /// Acknowledge a request approved without asking you (break-glass): it stops asking for
    /// attention on every device of everyone who was told.
    Ack { id: String },
    /// Revoke your approval of a request while it is still live (within its grant window),
    /// confirmed with your passkey: the requester and its integrations see it revoked.
    Revoke {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The approver's passkeys at a gateway: add a backup key, list, remove.
    Passkey {
        /// The gateway (a fingerprint prefix); may be left out when only one is paired.
        #[arg(long)]
        gateway: Option<String>,
        #[command(subcommand)]
        command: PasskeyCommand,
    },
    /// The security key itself.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Verify or export the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Fetch a request's evidence bundle from its gateway, check it against the pinned gateway
    /// key, and write it (to standard output, or to a file).
    Evidence {
        id: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Check a request's evidence bundle offline (from `countersign-gateway evidence` or
    /// `GET /v2/requests/{id}/evidence`); exits non-zero naming the first thing that fails.
    VerifyEvidence {
        file: PathBuf,
        /// The gateway's key fingerprint, learnt out of band (the pairing link's `fp`, or
        /// `countersign gateways`). Without it the bundle is only checked against the key it
        /// carries.
        #[arg(long, value_name = "FINGERPRINT")]
        gateway: Option<String>,
    },
    /// Check an approver's audit export offline (`countersign audit export`, from this device
    /// or another): the chain, the device's checkpoints, and the gateways' acknowledgements, so
    /// that an export cut back below an acknowledged checkpoint fails.
    VerifyExport {
        file: PathBuf,
        /// The device key's fingerprint, learnt out of band (`countersign audit export`'s
        /// checkpoints name it as `signer`). Without it the export is only checked against the
        /// key it carries.
        #[arg(long, value_name = "FINGERPRINT")]
        device: Option<String>,
        /// A gateway whose acknowledgement the export must carry.
        #[arg(long, value_name = "FINGERPRINT")]
        gateway: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ConnectCommand {
    /// A hoop.dev gateway: checks the token with hoop (who it is, and that it may list the
    /// reviews pending for you) and keeps it where the device key is. The token is an API key
    /// or an access token of yours.
    Hoop {
        /// hoop's address, as `https://hoop.example.com`.
        #[arg(long)]
        url: url::Url,
        /// Read the token from standard input (its first line).
        #[arg(
            long,
            conflicts_with = "token_file",
            required_unless_present = "token_file"
        )]
        token_stdin: bool,
        /// Read the token from this file (its first line).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum PasskeyCommand {
    /// Register another passkey (a backup security key): first confirm with a key already
    /// registered, then the new key is registered.
    Add,
    /// The approver's passkeys, as the gateway signs them.
    List,
    /// Remove a passkey by its credential id (as `list` shows it); the last one stays.
    Remove { cred_id: String },
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Set a first PIN on a security key that has none (entered twice), so that it can verify
    /// you: Countersign never uses a key without verification.
    SetPin,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and the device's checkpoints, then compare the log with the
    /// checkpoint each paired gateway holds (and upload a newer one); exits non-zero naming the
    /// first bad entry, or the gateway whose checkpoint the log no longer contains.
    Verify {
        /// Check only the local log; do not contact the gateways.
        #[arg(long)]
        local: bool,
    },
    /// Write the log as JSON Lines with a signed checkpoint.
    Export {
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}
