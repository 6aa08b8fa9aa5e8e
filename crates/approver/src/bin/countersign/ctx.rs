//! What every subcommand works with: the open [`Engine`], the output mode and the chosen
//! authenticator, with the two steps several subcommands share (opening the authenticator and
//! syncing before reading the inbox).

use crate::out::outln;
use crate::prompt::TerminalPrompt;
use countersign_approver::display::visible;
use countersign_approver::{open_authenticator, Authenticator, AuthenticatorChoice, Engine};

pub struct Ctx {
    pub engine: Engine,
    /// `--json`: one JSON object per line on stdout, nothing else there.
    pub json: bool,
    pub choice: Option<AuthenticatorChoice>,
    /// `--pin-stdin`.
    pub pin_stdin: bool,
}

impl Ctx {
    pub fn authenticator(&self) -> anyhow::Result<Box<dyn Authenticator>> {
        let prompt = std::sync::Arc::new(TerminalPrompt::new(self.pin_stdin));
        let a = open_authenticator(self.choice, self.engine.data_dir(), prompt)?;
        if !self.json {
            outln!("authenticator: {}", a.kind().describe());
        }
        Ok(a)
    }

    /// Syncs first unless offline; an unreachable gateway is a warning, not a failure.
    pub async fn maybe_sync(&self, offline: bool) -> anyhow::Result<()> {
        if offline {
            return Ok(());
        }
        let (reports, _) = self.engine.sync().await?;
        for r in reports {
            if let Some(err) = r.error {
                eprintln!(
                    "warning: gateway {} could not be reached ({err}); showing the local store",
                    visible(&r.name)
                );
            }
        }
        Ok(())
    }
}
