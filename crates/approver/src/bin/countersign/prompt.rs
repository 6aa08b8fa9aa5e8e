//! The security key's questions on the terminal: the PIN read without echo from the
//! controlling terminal (or, with `--pin-stdin`, the next line of standard input per ceremony), and "touch your
//! key" on standard error, so that `--json` output stays clean.

use std::io::BufRead;

use countersign_approver::{KeyError, KeyPrompt, Pin, PinAsk};

pub struct TerminalPrompt {
    /// `--pin-stdin`: each ceremony's PIN is the next line of standard input.
    pin_stdin: bool,
}

impl TerminalPrompt {
    pub fn new(pin_stdin: bool) -> Self {
        TerminalPrompt { pin_stdin }
    }

    fn read_stdin_line() -> Result<Pin, KeyError> {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            KeyError::Failed(format!(
                "the PIN could not be read from standard input: {e}"
            ))
        })?;
        let pin = line.trim_end_matches(['\n', '\r']).to_owned();
        // The line's buffer is wiped with the PIN it was moved into.
        line.clear();
        if pin.is_empty() {
            return Err(KeyError::PinRequired);
        }
        Ok(Pin::new(pin))
    }

    fn read_terminal(question: &str) -> Result<Pin, KeyError> {
        match rpassword::prompt_password(question) {
            Ok(pin) if pin.is_empty() => Err(KeyError::CeremonyCancelled),
            Ok(pin) => Ok(Pin::new(pin)),
            // No controlling terminal (a pipe, a service, CI).
            Err(_) => Err(KeyError::PinRequired),
        }
    }
}

fn tries(ask: &PinAsk) -> String {
    match ask.retries {
        Some(n) => format!(" ({n} {} left)", if n == 1 { "try" } else { "tries" }),
        None => String::new(),
    }
}

impl KeyPrompt for TerminalPrompt {
    fn insert(&self) {
        eprintln!("Insert your security key (Ctrl-C to cancel).");
    }

    fn touch(&self, among: usize) {
        if among > 1 {
            eprintln!("{among} security keys are plugged in: touch the one you want to use.");
        } else {
            eprintln!("Touch your security key (Ctrl-C to cancel).");
        }
    }

    fn pin(&self, ask: PinAsk) -> Result<Pin, KeyError> {
        if self.pin_stdin {
            if ask.again {
                // A wrong PIN is not guessed at again: the next line is for the next ceremony.
                return Err(KeyError::PinInvalid {
                    retries: ask.retries,
                });
            }
            return Self::read_stdin_line();
        }
        if ask.again {
            eprintln!("That PIN is wrong.");
        }
        Self::read_terminal(&format!(
            "PIN of your security key{} (empty to cancel): ",
            tries(&ask)
        ))
    }

    fn new_pin(&self, min_length: usize) -> Result<Pin, KeyError> {
        if self.pin_stdin {
            // Entered twice there too: two lines.
            let (first, second) = (Self::read_stdin_line()?, Self::read_stdin_line()?);
            if !first.matches(&second) {
                return Err(KeyError::PinPolicy("the two lines differ".into()));
            }
            return Ok(first);
        }
        for _ in 0..3 {
            let first = Self::read_terminal(&format!(
                "New PIN for the security key (at least {min_length} characters): "
            ))?;
            let second = Self::read_terminal("The same PIN again: ")?;
            if first.matches(&second) {
                return Ok(first);
            }
            eprintln!("The two PINs differ; enter them again.");
        }
        Err(KeyError::PinPolicy(
            "the two entries differed three times".into(),
        ))
    }
}
