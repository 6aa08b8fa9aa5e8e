//! The passkey client side: the [`Authenticator`] trait the engine runs WebAuthn ceremonies
//! through, the development-mode [`SoftAuthenticator`], the user's choice
//! (`--authenticator soft|usb`), and the ceremonies any CTAP2 backend runs with the client data
//! built here ([`register_with`], [`authenticate_with`]).
//!
//! Ceremonies are blocking (a real key waits for a touch): call them from a thread that may
//! block, e.g. inside `tokio::task::spawn_blocking`, or accept that the calling task blocks.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use countersign_protocol::webauthn::{client_data_json, origin_serialization, Ceremony};
use serde::Serialize;
use url::Url;
use webauthn_authenticator_rs::error::WebauthnCError;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_authenticator_rs::AuthenticatorBackendHashedClientData;
use webauthn_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse,
};

use crate::error::EngineError;

/// The file the software authenticator keeps its credentials in.
pub const SOFT_AUTHENTICATOR_FILE: &str = "soft-authenticator.cbor";

/// What kind of device performs the ceremony.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticatorKind {
    /// In-process keys on disk: for development and tests only.
    Software,
    /// A CTAP2 security key.
    SecurityKey,
}

impl AuthenticatorKind {
    /// The line every output that used this authenticator shows.
    pub fn describe(self) -> &'static str {
        match self {
            AuthenticatorKind::Software => "software (development mode, not a security key)",
            AuthenticatorKind::SecurityKey => "security key",
        }
    }
}

/// Runs WebAuthn ceremonies for the engine. Methods block until the ceremony ends.
pub trait Authenticator: Send {
    fn kind(&self) -> AuthenticatorKind;
    fn label(&self) -> &str;
    /// True for the authenticators only development and tests use: the software one, and a
    /// security key over the development socket. They are labelled wherever they show.
    fn development_mode(&self) -> bool {
        self.kind() == AuthenticatorKind::Software
    }
    fn register(
        &mut self,
        origin: &Url,
        creation: CreationChallengeResponse,
    ) -> Result<RegisterPublicKeyCredential, EngineError>;
    fn authenticate(
        &mut self,
        origin: &Url,
        challenge: RequestChallengeResponse,
    ) -> Result<PublicKeyCredential, EngineError>;
    /// Whether the authenticator can verify its user, checked before a pairing spends its
    /// one-time code: a security key with neither a PIN nor built-in verification is refused
    /// here (`uv_unavailable`), so the same link still works once it has a PIN.
    fn check_can_verify(&mut self) -> Result<(), EngineError> {
        Ok(())
    }
    /// Sets a first PIN on the authenticator (a security key that supports one and has none).
    fn set_pin(&mut self) -> Result<(), EngineError> {
        Err(EngineError::InvalidInput(format!(
            "the {} has no PIN to set",
            self.label()
        )))
    }
}

/// The user's choice of authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthenticatorChoice {
    Soft,
    Usb,
    /// A security key behind the development socket (`<data dir>/dev-key.sock`), served by a
    /// test harness: development mode only.
    DevKey,
}

impl FromStr for AuthenticatorChoice {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s {
            "soft" => Ok(AuthenticatorChoice::Soft),
            "usb" => Ok(AuthenticatorChoice::Usb),
            "dev-key" => Ok(AuthenticatorChoice::DevKey),
            other => Err(EngineError::UnknownAuthenticator(other.to_owned())),
        }
    }
}

impl fmt::Display for AuthenticatorChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthenticatorChoice::Soft => "soft",
            AuthenticatorChoice::Usb => "usb",
            AuthenticatorChoice::DevKey => "dev-key",
        })
    }
}

/// The development-mode authenticator: a `SoftToken` whose keys live in a file next to the
/// database. It claims user verification without asking anybody, which is why it must be
/// chosen explicitly and is labelled wherever it is used.
pub struct SoftAuthenticator {
    token: SoftToken,
    path: PathBuf,
}

impl SoftAuthenticator {
    /// Loads the token from `path`, or creates and saves a new one.
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let token = match std::fs::read(path) {
            Ok(bytes) => SoftToken::from_cbor(&bytes).map_err(|e| {
                EngineError::Corrupt(format!("{} cannot be read: {e:?}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // true: the token reports user verification, as the relying party requires.
                let (token, _ca) = SoftToken::new(true).map_err(|e| {
                    EngineError::Ceremony(format!("cannot create a soft token: {e:?}"))
                })?;
                token
            }
            Err(e) => return Err(e.into()),
        };
        let this = SoftAuthenticator {
            token,
            path: path.to_owned(),
        };
        this.save()?;
        Ok(this)
    }

    /// Writes the token atomically (temp file, fsync, rename) with owner-only permissions, so a
    /// crash mid-write never leaves a truncated credential store.
    fn save(&self) -> Result<(), EngineError> {
        let bytes = self
            .token
            .to_cbor()
            .map_err(|e| EngineError::Corrupt(format!("cannot encode the soft token: {e:?}")))?;
        let tmp = self.path.with_extension("cbor.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // Persist the rename itself.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Authenticator for SoftAuthenticator {
    fn kind(&self) -> AuthenticatorKind {
        AuthenticatorKind::Software
    }

    fn label(&self) -> &str {
        "software authenticator (development mode, not a security key)"
    }

    fn register(
        &mut self,
        origin: &Url,
        creation: CreationChallengeResponse,
    ) -> Result<RegisterPublicKeyCredential, EngineError> {
        let out = register_with(&mut self.token, origin, creation)?;
        self.save()?;
        Ok(out)
    }

    fn authenticate(
        &mut self,
        origin: &Url,
        challenge: RequestChallengeResponse,
    ) -> Result<PublicKeyCredential, EngineError> {
        let out = authenticate_with(&mut self.token, origin, challenge)?;
        // The signature counter moved: persist it so a restart never reuses a counter value.
        self.save()?;
        Ok(out)
    }
}

/// Why a ceremony through [`register_with`] or [`authenticate_with`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    /// The client refused before asking the authenticator (the origin or relying party id).
    #[error("{0}")]
    Refused(EngineError),
    /// The authenticator failed, as the library reports it.
    #[error("the authenticator failed: {0}")]
    Key(WebauthnCError),
}

impl From<CeremonyError> for EngineError {
    fn from(e: CeremonyError) -> Self {
        match e {
            CeremonyError::Refused(e) => e,
            CeremonyError::Key(e) => {
                EngineError::Ceremony(format!("the authenticator failed: {e}"))
            }
        }
    }
}

/// A registration with `token` for the gateway at `origin`, with the client data built by
/// [`client_data_for`] and only its hash given to the authenticator.
pub fn register_with<T: AuthenticatorBackendHashedClientData>(
    token: &mut T,
    origin: &Url,
    creation: CreationChallengeResponse,
) -> Result<RegisterPublicKeyCredential, CeremonyError> {
    let options = creation.public_key;
    let client_data = client_data_for(
        Ceremony::Create,
        origin,
        &options.rp.id,
        options.challenge.as_ref(),
    )
    .map_err(CeremonyError::Refused)?;
    let mut out = token
        .perform_register(sha256(&client_data), options, CEREMONY_TIMEOUT_MS)
        .map_err(CeremonyError::Key)?;
    out.response.client_data_json = client_data;
    Ok(out)
}

/// An assertion by `token` for the gateway at `origin`, with the client data built by
/// [`client_data_for`] and only its hash given to the authenticator.
pub fn authenticate_with<T: AuthenticatorBackendHashedClientData>(
    token: &mut T,
    origin: &Url,
    challenge: RequestChallengeResponse,
) -> Result<PublicKeyCredential, CeremonyError> {
    let options = challenge.public_key;
    let client_data = client_data_for(
        Ceremony::Get,
        origin,
        &options.rp_id,
        options.challenge.as_ref(),
    )
    .map_err(CeremonyError::Refused)?;
    let mut out = token
        .perform_auth(sha256(&client_data), options, CEREMONY_TIMEOUT_MS)
        .map_err(CeremonyError::Key)?;
    out.response.client_data_json = client_data;
    Ok(out)
}

/// How long an authenticator may take for one ceremony.
const CEREMONY_TIMEOUT_MS: u32 = 60_000;

fn sha256(bytes: &[u8]) -> Vec<u8> {
    countersign_protocol::Digest::of_bytes(bytes).0.to_vec()
}

/// The `clientDataJSON` of one ceremony with the gateway at `origin` (the pinned WebAuthn
/// origin), built as docs/protocol.md 5a says rather than by the WebAuthn library, so that it
/// carries an origin serialisation and no `tokenBinding`. Every authenticator hands the
/// authenticator only its hash. Like a browser, it refuses an origin that is not secure
/// (https, or http on localhost) and a relying party id that is not the origin's host or a
/// suffix of it.
pub fn client_data_for(
    ceremony: Ceremony,
    origin: &Url,
    rp_id: &str,
    challenge: &[u8],
) -> Result<Vec<u8>, EngineError> {
    let refuse =
        |why: String| EngineError::Ceremony(format!("the passkey ceremony is refused: {why}"));
    let serialized =
        origin_serialization(origin).ok_or_else(|| refuse(format!("{origin} has no origin")))?;
    let host = origin
        .domain()
        .ok_or_else(|| refuse(format!("{origin} names no domain")))?;
    if origin.scheme() != "https" && !(origin.scheme() == "http" && host == "localhost") {
        return Err(refuse(format!(
            "{origin} is neither https nor http on localhost"
        )));
    }
    if !(host == rp_id || host.ends_with(&format!(".{rp_id}"))) {
        return Err(refuse(format!(
            "the relying party id {rp_id} is not {host} or a suffix of it"
        )));
    }
    Ok(client_data_json(ceremony, challenge, &serialized))
}
