//! The security key's questions, asked in the window: [`WindowPrompt`] is the engine's
//! [`KeyPrompt`] for the desktop. It pushes each ask to every connected window as a
//! `UiEvent::SecurityKey` and waits on the ceremony's thread for the `key_answer` command:
//! a PIN (a `Secret` all the way, wiped when dropped, never logged or stored), the next key, or
//! Cancel. Cancel also stops a ceremony that waits for a touch (the engine polls
//! [`KeyPrompt::cancelled`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use countersign_approver::security_key::CEREMONY_TIMEOUT;
use countersign_approver::{KeyError, KeyPrompt, Pin, PinAsk};
use countersign_ipc::agent::AgentMessage;
use countersign_ipc::{ErrorCode, IpcError, KeyAnswer, KeyAsk, UiEvent};

use crate::clients::Clients;
use crate::locks::lock;

/// How long an ask waits for the person before the ceremony ends with `ceremony_timeout`.
const ANSWER_TIMEOUT: Duration = CEREMONY_TIMEOUT;

pub struct WindowPrompt {
    clients: Arc<Clients>,
    /// The ask waiting for its answer, if one is.
    waiting: Mutex<Option<mpsc::Sender<KeyAnswer>>>,
    cancelled: AtomicBool,
}

impl WindowPrompt {
    pub fn new(clients: Arc<Clients>) -> WindowPrompt {
        WindowPrompt {
            clients,
            waiting: Mutex::new(None),
            cancelled: AtomicBool::new(false),
        }
    }

    /// A ceremony starts: an earlier Cancel does not carry over.
    pub fn begin(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
    }

    /// The `key_answer` command. Cancel always succeeds (it also stops a wait for a touch);
    /// a PIN or Continue with nothing asked is refused.
    pub fn answer(&self, answer: KeyAnswer) -> Result<(), IpcError> {
        let waiting = lock(&self.waiting).take();
        if answer == KeyAnswer::Cancel {
            self.cancelled.store(true, Ordering::SeqCst);
            if let Some(tx) = waiting {
                let _ = tx.send(answer);
            }
            return Ok(());
        }
        match waiting {
            Some(tx) => tx.send(answer).map_err(|_| nothing_asked()),
            None => Err(nothing_asked()),
        }
    }

    fn push(&self, ask: KeyAsk) -> usize {
        self.clients
            .push(&AgentMessage::Event(UiEvent::SecurityKey { ask }))
    }

    /// Pushes `ask` and waits for the person's answer.
    fn ask(&self, ask: KeyAsk) -> Result<KeyAnswer, KeyError> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(KeyError::CeremonyCancelled);
        }
        let (tx, rx) = mpsc::channel();
        *lock(&self.waiting) = Some(tx);
        if self.push(ask) == 0 {
            // No window to ask in.
            lock(&self.waiting).take();
            return Err(KeyError::PinRequired);
        }
        let answer = rx.recv_timeout(ANSWER_TIMEOUT);
        lock(&self.waiting).take();
        match answer {
            Ok(KeyAnswer::Cancel) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(KeyError::CeremonyCancelled)
            }
            Ok(a) => Ok(a),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(KeyError::CeremonyTimeout),
        }
    }

    fn ask_pin(&self, ask: KeyAsk) -> Result<Pin, KeyError> {
        match self.ask(ask)? {
            KeyAnswer::Pin { pin } => Ok(Pin::new(pin.take())),
            _ => Err(KeyError::PinRequired),
        }
    }

    /// Adding a backup key: the first key proved the approver; waits for the person to plug
    /// in the new key and continue.
    pub fn next_key(&self) -> Result<(), KeyError> {
        match self.ask(KeyAsk::NextKey)? {
            KeyAnswer::Continue => Ok(()),
            _ => Err(KeyError::CeremonyCancelled),
        }
    }
}

fn nothing_asked() -> IpcError {
    IpcError::new(
        ErrorCode::InvalidInput,
        "The security key is not waiting for an answer.",
    )
}

impl KeyPrompt for WindowPrompt {
    fn insert(&self) {
        self.push(KeyAsk::Insert);
    }

    fn touch(&self, among: usize) {
        self.push(KeyAsk::Touch {
            among: u32::try_from(among).unwrap_or(u32::MAX),
        });
    }

    fn pin(&self, ask: PinAsk) -> Result<Pin, KeyError> {
        self.ask_pin(KeyAsk::Pin {
            retries: ask.retries,
            again: ask.again,
        })
    }

    fn new_pin(&self, min_length: usize) -> Result<Pin, KeyError> {
        self.ask_pin(KeyAsk::NewPin {
            min_length: u32::try_from(min_length).unwrap_or(u32::MAX),
        })
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_ipc::Secret;

    #[test]
    fn an_ask_reaches_the_window_and_its_answer_the_ceremony() {
        let clients = Arc::new(Clients::default());
        let prompt = Arc::new(WindowPrompt::new(clients.clone()));
        // No window: nobody to ask.
        assert_eq!(
            prompt
                .pin(PinAsk {
                    retries: Some(8),
                    again: false
                })
                .unwrap_err(),
            KeyError::PinRequired
        );
        let mut window = clients.subscribe();
        assert!(prompt.answer(KeyAnswer::Continue).is_err());
        let asking = {
            let p = prompt.clone();
            std::thread::spawn(move || {
                p.pin(PinAsk {
                    retries: Some(7),
                    again: true,
                })
            })
        };
        let line = window.messages.blocking_recv().unwrap();
        assert_eq!(
            &*line,
            r#"{"event":{"type":"security_key","ask":{"kind":"pin","retries":7,"again":true}}}"#
        );
        prompt
            .answer(KeyAnswer::Pin {
                pin: Secret::new("4321".into()),
            })
            .unwrap();
        assert!(asking
            .join()
            .unwrap()
            .unwrap()
            .matches(&Pin::new("4321".into())));

        // Cancel ends a waiting ask, and every later one of the same ceremony.
        let asking = {
            let p = prompt.clone();
            std::thread::spawn(move || p.new_pin(4))
        };
        window.messages.blocking_recv().unwrap();
        prompt.answer(KeyAnswer::Cancel).unwrap();
        assert_eq!(
            asking.join().unwrap().unwrap_err(),
            KeyError::CeremonyCancelled
        );
        assert!(prompt.cancelled());
        assert_eq!(prompt.next_key().unwrap_err(), KeyError::CeremonyCancelled);
        prompt.begin();
        assert!(!prompt.cancelled());
    }
}
