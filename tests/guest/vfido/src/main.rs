//! countersign-vfido: a virtual FIDO2 (CTAP2) security key on /dev/uhid, for the emulated-guest
//! test of the real USB HID path (tests/guest/run.sh). A test tool only: it links soft-fido2
//! (AGPL-3.0), so it is its own workspace, built and run as a separate program, and nothing of
//! Countersign links it.
//!
//! Usage: countersign-vfido [--pin PIN] [--aaguid 32HEX] [--name NAME] [--uv] [--hold FILE]
//!
//! Prints READY once the UHID device exists. Killing it pulls the key out: the kernel removes
//! the device when /dev/uhid is closed. While the file `--hold` names exists, the key waits
//! for its touch, so that a test can pull it out while a ceremony waits. Credentials live in
//! memory.
use sha2::{Digest, Sha256};
use soft_fido2::{
    Authenticator, AuthenticatorCallbacks, AuthenticatorConfig, AuthenticatorOptions, Credential,
    CredentialRef, Result, UpResult, UvResult,
};
use soft_fido2_transport::{Cmd, CommandHandler, CtapHidHandler, Packet, UhidDevice};
use std::{collections::HashMap, io::Write, sync::Mutex, time::Duration};

#[derive(Default)]
struct Store(Mutex<HashMap<Vec<u8>, Credential>>);

impl AuthenticatorCallbacks for Store {
    fn request_up(&self, _: &str, _: Option<&str>, _: &str) -> Result<UpResult> {
        // The "touch" comes by itself.
        Ok(UpResult::Accepted)
    }
    fn request_uv(&self, _: &str, _: Option<&str>, _: &str) -> Result<UvResult> {
        Ok(UvResult::Accepted) // only reached with --uv (built-in UV configured)
    }
    fn write_credential(&self, c: &CredentialRef) -> Result<()> {
        self.0.lock().unwrap().insert(c.id.to_vec(), c.to_owned());
        Ok(())
    }
    fn read_credential(&self, id: &[u8]) -> Result<Option<Credential>> {
        Ok(self.0.lock().unwrap().get(id).cloned())
    }
    fn delete_credential(&self, id: &[u8]) -> Result<()> {
        self.0.lock().unwrap().remove(id);
        Ok(())
    }
    fn list_credentials(&self, rp: &str, user: Option<&[u8]>) -> Result<Vec<Credential>> {
        let s = self.0.lock().unwrap();
        let hit = |c: &&Credential| c.rp.id == rp && user.map_or(true, |u| c.user.id == u);
        Ok(s.values().filter(hit).cloned().collect())
    }
    fn enumerate_rps(&self) -> Result<Vec<(String, Option<String>, usize)>> {
        let mut m: HashMap<String, (Option<String>, usize)> = HashMap::new();
        for c in self.0.lock().unwrap().values() {
            m.entry(c.rp.id.clone()).or_insert((c.rp.name.clone(), 0)).1 += 1;
        }
        Ok(m.into_iter().map(|(id, (name, n))| (id, name, n)).collect())
    }
    fn credential_count(&self) -> Result<usize> {
        Ok(self.0.lock().unwrap().len())
    }
    fn get_timestamp_ms(&self) -> u64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

struct Ctap(Authenticator<Store>, Option<std::path::PathBuf>);

impl CommandHandler for Ctap {
    fn handle_command(&mut self, cmd: Cmd, data: &[u8]) -> soft_fido2_transport::Result<Vec<u8>> {
        // While the --hold file exists, makeCredential (0x01) and getAssertion (0x02) wait, as
        // a key waiting for its touch does.
        let needs_touch = cmd == Cmd::Cbor && matches!(data.first(), Some(0x01 | 0x02));
        while needs_touch && self.1.as_ref().is_some_and(|f| f.exists()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if cmd != Cmd::Cbor {
            return Ok(vec![0x6D, 0x00]); // CTAPHID_MSG (U2F): SW_INS_NOT_SUPPORTED
        }
        let mut out = Vec::new();
        let r = self.0.handle(data, &mut out); // out = status byte + CBOR
        r.map_err(|e| soft_fido2_transport::Error::Other(format!("{e:?}")))?;
        Ok(out)
    }
}

fn die(msg: &str) -> ! {
    eprintln!("countersign-vfido: {msg}");
    std::process::exit(2)
}

fn main() {
    let (mut pin, mut aaguid, mut uv, mut hold) = (None::<String>, [0u8; 16], false, None);
    let mut name = "countersign virtual key".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pin" => pin = Some(args.next().unwrap_or_else(|| die("--pin PIN"))),
            "--name" => name = args.next().unwrap_or_else(|| die("--name NAME")),
            "--uv" => uv = true,
            "--hold" => hold = Some(args.next().unwrap_or_else(|| die("--hold FILE")).into()),
            "--aaguid" => {
                let h = args
                    .next()
                    .unwrap_or_else(|| die("--aaguid 32HEX"))
                    .replace('-', "");
                if h.len() != 32 {
                    die("--aaguid wants 16 bytes of hex")
                }
                for (i, b) in aaguid.iter_mut().enumerate() {
                    let byte = u8::from_str_radix(&h[2 * i..2 * i + 2], 16);
                    *b = byte.unwrap_or_else(|_| die("--aaguid: bad hex"));
                }
            }
            other => die(&format!("unknown argument {other}")),
        }
    }
    if let Some(p) = &pin {
        // Picked up by the next Authenticator built in this process (a process-wide static).
        Authenticator::<Store>::set_pin_hash(&Sha256::digest(p.as_bytes()));
    }
    let options = AuthenticatorOptions::new()
        .with_resident_keys(true)
        .with_user_presence(true)
        .with_client_pin(Some(true)) // supported; GetInfo reports whether a PIN is set
        .with_pin_uv_auth_token(Some(true))
        .with_user_verification(uv.then_some(true)); // None: no built-in UV, PIN only
    let config = AuthenticatorConfig::builder()
        .aaguid(aaguid)
        .options(options)
        .algorithms(vec![-7]) // ES256 only
        .build();
    let auth = Authenticator::with_config(Store(Mutex::default()), config)
        .unwrap_or_else(|e| die(&format!("authenticator: {e:?}")));
    let dev = UhidDevice::create_fido_device_with_ids(Some(&name), None, None, None)
        .unwrap_or_else(|e| die(&format!("/dev/uhid: {e:?}")));
    let mut hid = CtapHidHandler::new(Ctap(auth, hold));
    println!("READY");
    let _ = std::io::stdout().flush();
    loop {
        let mut buf = [0u8; 64];
        match dev.read_packet(&mut buf) {
            Ok(Some(_)) => {
                for p in hid
                    .process_packet(Packet::from_bytes(buf))
                    .unwrap_or_default()
                {
                    if let Err(e) = dev.write_packet(p.as_bytes()) {
                        die(&format!("uhid write: {e:?}"));
                    }
                }
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => die(&format!("uhid read: {e:?}")),
        }
    }
}
