//! The platform's side for tests: fake keys plugged into a [`KeySource`], and a person who
//! answers the key's questions from a script.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use countersign_approver::{KeyError, KeyPrompt, KeySource, Pin, PinAsk};

use super::{FakeKey, FakeToken};

/// The keys plugged in, as a [`KeySource`]; a test plugs and pulls them through the handle.
#[derive(Clone, Default)]
pub struct FakeKeys {
    keys: Arc<Mutex<Vec<FakeKey>>>,
}

impl FakeKeys {
    pub fn with(keys: &[&FakeKey]) -> FakeKeys {
        FakeKeys {
            keys: Arc::new(Mutex::new(keys.iter().map(|k| (*k).clone()).collect())),
        }
    }

    pub fn plug(&self, key: &FakeKey) {
        self.keys.lock().unwrap().push(key.clone());
    }

    /// Unplugs every key.
    pub fn unplug_all(&self) {
        self.keys.lock().unwrap().clear();
    }
}

impl KeySource for FakeKeys {
    type Token = FakeToken;
    fn tokens(&mut self) -> Result<Vec<FakeToken>, KeyError> {
        Ok(self
            .keys
            .lock()
            .unwrap()
            .iter()
            .map(FakeKey::token)
            .collect())
    }
}

/// What the key asked the scripted person, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    Insert,
    Touch(usize),
    Pin(PinAsk),
    NewPin,
}

/// A person following a script: the PINs to type, in order (none left: Cancel), and a Cancel
/// button a test may press at any time.
#[derive(Clone, Default)]
pub struct ScriptedPerson {
    pins: Arc<Mutex<VecDeque<String>>>,
    asked: Arc<Mutex<Vec<Asked>>>,
    cancel: Arc<AtomicBool>,
}

impl ScriptedPerson {
    pub fn typing(pins: &[&str]) -> ScriptedPerson {
        let p = ScriptedPerson::default();
        p.will_type(pins);
        p
    }

    pub fn will_type(&self, pins: &[&str]) {
        self.pins
            .lock()
            .unwrap()
            .extend(pins.iter().map(|p| (*p).to_owned()));
    }

    pub fn press_cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub fn reset_cancel(&self) {
        self.cancel.store(false, Ordering::SeqCst);
    }

    /// Everything asked so far, and forgets it.
    pub fn take_asked(&self) -> Vec<Asked> {
        std::mem::take(&mut *self.asked.lock().unwrap())
    }

    fn next_pin(&self) -> Result<Pin, KeyError> {
        self.pins
            .lock()
            .unwrap()
            .pop_front()
            .map(Pin::new)
            .ok_or(KeyError::CeremonyCancelled)
    }
}

impl KeyPrompt for ScriptedPerson {
    fn insert(&self) {
        self.asked.lock().unwrap().push(Asked::Insert);
    }
    fn touch(&self, among: usize) {
        self.asked.lock().unwrap().push(Asked::Touch(among));
    }
    fn pin(&self, ask: PinAsk) -> Result<Pin, KeyError> {
        self.asked.lock().unwrap().push(Asked::Pin(ask));
        self.next_pin()
    }
    fn new_pin(&self, _min_length: usize) -> Result<Pin, KeyError> {
        self.asked.lock().unwrap().push(Asked::NewPin);
        self.next_pin()
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}
