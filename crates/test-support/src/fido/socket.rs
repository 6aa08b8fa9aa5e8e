//! A [`FakeKey`] served on the approver's development key socket
//! (`countersign_approver::security_key::socket`), so that a separate process (the desktop
//! app's agent, chosen with `COUNTERSIGN_AUTHENTICATOR=dev-key`) drives it as it would drive a
//! key over USB: every command, keep-alive, cancel and pulled-out key crosses the socket.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use countersign_approver::security_key::socket::{
    read_frame, write_frame, ANSWER, CANCEL, CANCELLED, CMD, GONE, KEEPALIVE,
};
use tokio::sync::mpsc;
use webauthn_authenticator_rs::error::WebauthnCError;
use webauthn_authenticator_rs::transport::Token;
use webauthn_authenticator_rs::types::{CableRequestType, CableState, EnrollSampleStatus};
use webauthn_authenticator_rs::ui::UiCallback;

use super::FakeKey;

/// CTAP2_ERR_KEEPALIVE_CANCEL: the answer to a command the host cancelled.
const KEEPALIVE_CANCEL: u8 = 0x2d;
/// CTAP1_ERR_OTHER.
const ERR_OTHER: u8 = 0x7f;

/// The key listening on `path` until dropped (the socket file is then removed).
pub struct KeySocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeySocket {
    pub fn serve(key: FakeKey, path: &Path) -> std::io::Result<KeySocket> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fake-key-socket".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let key = key.clone();
                    let _ = std::thread::Builder::new()
                        .name("fake-key-connection".into())
                        .spawn(move || serve_connection(key, conn));
                }
            })?;
        Ok(KeySocket {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for KeySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the stop.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The key's keep-alives, written as the host's transport would receive them.
struct Keepalive {
    writer: Arc<Mutex<UnixStream>>,
}

impl std::fmt::Debug for Keepalive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keepalive")
    }
}

impl Keepalive {
    fn send(&self, status: u8) {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let _ = write_frame(&mut *w, KEEPALIVE, &[status]);
    }
}

impl UiCallback for Keepalive {
    fn request_pin(&self) -> Option<String> {
        None
    }
    fn request_touch(&self) {
        self.send(2);
    }
    fn processing(&self) {
        self.send(1);
    }
    fn fingerprint_enrollment_feedback(&self, _: u32, _: Option<EnrollSampleStatus>) {}
    fn cable_qr_code(&self, _: CableRequestType, _: String) {}
    fn dismiss_qr_code(&self) {}
    fn cable_status_update(&self, _: CableState) {}
}

fn serve_connection(key: FakeKey, conn: UnixStream) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let (Ok(mut reader), Ok(writer)) = (conn.try_clone(), conn.try_clone()) else {
        return;
    };
    let writer = Arc::new(Mutex::new(writer));
    let (tx, mut frames) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(Some(frame)) = read_frame(&mut reader) {
            if tx.send(frame).is_err() {
                break;
            }
        }
    });
    let write = |kind: u8, payload: &[u8]| {
        let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
        write_frame(&mut *w, kind, payload).is_ok()
    };
    runtime.block_on(async {
        let mut token = key.token();
        while let Some((kind, payload)) = frames.recv().await {
            match kind {
                CMD => {
                    let ui = Keepalive {
                        writer: writer.clone(),
                    };
                    let outcome = {
                        let run = token.transmit_raw(&payload, &ui);
                        tokio::pin!(run);
                        loop {
                            tokio::select! {
                                answer = &mut run => break Some(answer),
                                frame = frames.recv() => match frame {
                                    Some((CANCEL, _)) => break None,
                                    // The host went away.
                                    None => return,
                                    Some(_) => {}
                                },
                            }
                        }
                    };
                    let sent = match outcome {
                        Some(Ok(cbor)) => {
                            let mut answer = vec![0];
                            answer.extend_from_slice(&cbor);
                            write(ANSWER, &answer)
                        }
                        Some(Err(WebauthnCError::Ctap(status))) => write(ANSWER, &[status.into()]),
                        Some(Err(WebauthnCError::IoError(_))) => write(GONE, &[]),
                        Some(Err(_)) => write(ANSWER, &[ERR_OTHER]),
                        None => {
                            let _ = token.cancel().await;
                            write(ANSWER, &[KEEPALIVE_CANCEL]) && write(CANCELLED, &[])
                        }
                    };
                    if !sent {
                        return;
                    }
                }
                CANCEL => {
                    let _ = token.cancel().await;
                    if !write(CANCELLED, &[]) {
                        return;
                    }
                }
                _ => {}
            }
        }
    });
}
