//! The development key socket: a security key reached over a Unix socket instead of USB HID,
//! so that the desktop app's PIN dialog and touch prompt can be driven end to end by a test
//! harness that serves a fake CTAP2 key (`countersign-test-support`). It is chosen only with
//! `--authenticator dev-key` / `COUNTERSIGN_AUTHENTICATOR=dev-key` and is labelled development
//! mode wherever it shows; nothing of the fake key is in the product.
//!
//! The socket is `<data dir>/dev-key.sock`. Each message is a frame: one type byte, a 32-bit
//! big-endian length and that many bytes. The host sends [`CMD`] (a CTAP2 command: its command
//! byte and CBOR parameters, as CTAPHID_CBOR carries them) and [`CANCEL`]; the key answers each
//! command with exactly one [`ANSWER`] (status byte, then CBOR) or [`GONE`] (pulled out), sends
//! [`KEEPALIVE`] while it works (status 1 processing, 2 waiting for a touch), and answers each
//! cancel with [`CANCELLED`] after the answer of the command it cancelled.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use webauthn_authenticator_rs::error::{CtapError, WebauthnCError};
use webauthn_authenticator_rs::transport::Token;
use webauthn_authenticator_rs::ui::UiCallback;
use webauthn_rs_proto::AuthenticatorTransport;

use super::prompt::KeySource;
use crate::key_error::KeyError;

/// The socket's file name in the data directory.
pub const DEV_KEY_SOCKET_FILE: &str = "dev-key.sock";

pub const CMD: u8 = 0x01;
pub const CANCEL: u8 = 0x02;
pub const ANSWER: u8 = 0x81;
pub const KEEPALIVE: u8 = 0x82;
pub const GONE: u8 = 0x83;
pub const CANCELLED: u8 = 0x84;

/// The longest frame either side accepts (CTAPHID messages are at most 7609 bytes).
pub const MAX_FRAME: usize = 64 * 1024;

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too long"))?;
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(kind);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)?;
    w.flush()
}

/// Reads one frame; `None` at the end of the stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is longer than {MAX_FRAME}"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

/// The key behind the development socket, as a [`KeySource`]: plugged in while something
/// listens on the socket.
pub struct DevKeySocket {
    path: PathBuf,
}

impl DevKeySocket {
    pub fn new(path: PathBuf) -> DevKeySocket {
        DevKeySocket { path }
    }
}

impl KeySource for DevKeySocket {
    type Token = SocketToken;

    fn tokens(&mut self) -> Result<Vec<SocketToken>, KeyError> {
        match UnixStream::connect(&self.path) {
            Ok(stream) => Ok(vec![SocketToken::new(stream).map_err(|e| {
                KeyError::Failed(format!("the development key socket failed: {e}"))
            })?]),
            // Nobody listening: no key plugged in.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(KeyError::Failed(format!(
                "the development key socket {} cannot be opened: {e}",
                self.path.display()
            ))),
        }
    }

    fn label(&self) -> String {
        "security key over the development socket (development mode)".into()
    }

    fn development_mode(&self) -> bool {
        true
    }
}

/// One connection to the key behind the socket. A reader thread turns the key's frames into a
/// channel, so that a command dropped while it waits (Cancel, the deadline) loses no bytes.
pub struct SocketToken {
    writer: UnixStream,
    frames: mpsc::UnboundedReceiver<(u8, Vec<u8>)>,
}

impl std::fmt::Debug for SocketToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketToken").finish_non_exhaustive()
    }
}

impl Drop for SocketToken {
    fn drop(&mut self) {
        // Ends the reader thread's read.
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}

impl SocketToken {
    fn new(stream: UnixStream) -> std::io::Result<SocketToken> {
        let mut reader = stream.try_clone()?;
        let (tx, frames) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("dev-key-socket".into())
            .spawn(move || {
                // Ends at the end of the stream, on an error, or when the token is dropped.
                while let Ok(Some(frame)) = read_frame(&mut reader) {
                    if tx.send(frame).is_err() {
                        break;
                    }
                }
            })?;
        Ok(SocketToken {
            writer: stream,
            frames,
        })
    }

    fn send(&mut self, kind: u8, payload: &[u8]) -> Result<(), WebauthnCError> {
        write_frame(&mut self.writer, kind, payload).map_err(|_| gone())
    }
}

/// What the HID transport reports when the device node has gone.
fn gone() -> WebauthnCError {
    WebauthnCError::IoError("No such device (os error 19)".into())
}

#[async_trait]
impl Token for SocketToken {
    type Id = u8;

    fn get_transport(&self) -> AuthenticatorTransport {
        AuthenticatorTransport::Usb
    }

    async fn transmit_raw<U>(&mut self, cbor: &[u8], ui: &U) -> Result<Vec<u8>, WebauthnCError>
    where
        U: UiCallback,
    {
        self.send(CMD, cbor)?;
        loop {
            match self.frames.recv().await {
                Some((ANSWER, answer)) => {
                    return match answer.split_first() {
                        Some((0, cbor)) => Ok(cbor.to_vec()),
                        Some((&status, _)) => Err(WebauthnCError::Ctap(CtapError::from(status))),
                        None => Err(WebauthnCError::MessageTooShort),
                    };
                }
                Some((KEEPALIVE, status)) => {
                    if status.first() == Some(&2) {
                        ui.request_touch();
                    } else {
                        ui.processing();
                    }
                }
                // An acknowledgement of an earlier cancel is not this command's answer.
                Some((CANCELLED, _)) => {}
                Some((GONE, _)) | None => return Err(gone()),
                Some((other, _)) => {
                    tracing::warn!(frame = other, "the development key sent an unknown frame");
                    return Err(WebauthnCError::Unknown);
                }
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), WebauthnCError> {
        self.send(CANCEL, &[])?;
        // Everything up to the acknowledgement belongs to the cancelled command.
        let drain = async {
            loop {
                match self.frames.recv().await {
                    Some((CANCELLED, _)) => return Ok(()),
                    Some((GONE, _)) | None => return Err(gone()),
                    Some(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(2), drain)
            .await
            .map_err(|_| WebauthnCError::Cancelled)?
    }

    async fn init(&mut self) -> Result<(), WebauthnCError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), WebauthnCError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_oversize() {
        let mut buf = Vec::new();
        write_frame(&mut buf, CMD, &[0x04]).unwrap();
        write_frame(&mut buf, CANCEL, &[]).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap(), Some((CMD, vec![0x04])));
        assert_eq!(read_frame(&mut r).unwrap(), Some((CANCEL, vec![])));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        assert!(write_frame(&mut Vec::new(), CMD, &vec![0; MAX_FRAME + 1]).is_err());
        let mut huge = vec![ANSWER];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(read_frame(&mut &huge[..]).is_err());
    }

    #[test]
    fn no_listener_is_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = DevKeySocket::new(dir.path().join(DEV_KEY_SOCKET_FILE));
        assert!(keys.tokens().unwrap().is_empty());
    }
}
