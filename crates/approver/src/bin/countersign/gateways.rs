//! `pair`, `gateways` and `key set-pin`: pairing this device with a gateway from its link
//! (offering a PIN to a security key that has none), listing the gateways it is paired with
//! and the hoop gateways it is connected to, and setting a first PIN on a security key.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use countersign_approver::display::visible;
use countersign_approver::{EngineError, KeyError};
use countersign_protocol::PairingLink;

use crate::ctx::Ctx;
use crate::json;
use crate::out::outln;

pub async fn pair(ctx: &Ctx, link: &str, device_name: Option<String>) -> anyhow::Result<ExitCode> {
    let link = PairingLink::parse(link).map_err(EngineError::from)?;
    let mut auth = ctx.authenticator()?;
    let name = device_name
        .unwrap_or_else(|| countersign_approver::device_name(countersign_approver::Host::Cli));
    let g = match ctx.engine.pair(&link, &name, auth.as_mut()).await {
        // A key that could have a PIN but has none: offered one, then paired with it.
        Err(EngineError::SecurityKey(KeyError::UvUnavailable { can_set_pin: true }))
            if !ctx.pin_stdin && std::io::stdin().is_terminal() && offer_pin() =>
        {
            auth.set_pin()?;
            eprintln!("The key has a PIN now.");
            ctx.engine.pair(&link, &name, auth.as_mut()).await?
        }
        other => other?,
    };
    if ctx.json {
        json::print(&json::Paired::new(&g, auth.kind().describe()))?;
    } else {
        outln!("paired with {} ({})", visible(&g.name), g.url);
        outln!("approver:    {}", visible(&g.approver));
        outln!("fingerprint: {}", g.fingerprint);
        outln!("device id:   {}", g.device_id);
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks whether to set a PIN on a key that has none.
fn offer_pin() -> bool {
    eprintln!("{}", KeyError::UvUnavailable { can_set_pin: true });
    eprint!("Set a PIN on this key now? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim().eq_ignore_ascii_case("y")
}

/// `countersign key set-pin`.
pub fn set_pin(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let mut auth = ctx.authenticator()?;
    auth.set_pin()?;
    if ctx.json {
        outln!("{}", serde_json::json!({"pin_set": true}));
    } else {
        outln!("The security key has a PIN now; Countersign asks for it at each approval.");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    if !ctx.json {
        outln!("device key: {}", ctx.engine.key_location().describe());
    }
    for g in ctx.engine.gateways()? {
        let log = ctx.engine.log_witness(&g.fingerprint)?;
        if ctx.json {
            json::print(&json::Gateway::from(&g).with_log(&log))?;
        } else {
            outln!(
                "{}  {}  approver {}  device {}  {}",
                &g.fingerprint[..16.min(g.fingerprint.len())],
                visible(&g.name),
                visible(&g.approver),
                g.device_id,
                g.url
            );
            match (&log.history_changed, &log.newest) {
                (Some(h), _) => outln!("  WARNING: {}", h.sentence()),
                (None, Some(w)) => outln!("  log: witnessed {} entries (root {})", w.size, w.root),
                (None, None) => outln!("  log: no checkpoint witnessed yet"),
            }
        }
    }
    for c in ctx.engine.hoop_connections()? {
        let health = ctx.engine.hoop_health(&c.id)?;
        if ctx.json {
            json::print(&json::HoopGateway::from(&c).with_health(&health))?;
        } else {
            outln!(
                "hoop  {}  as {}  {}  (unsigned: hoop signs nothing)",
                visible(&c.name()),
                visible(&c.user.email),
                c.url
            );
            match &health.unreachable {
                None => outln!("  health: ok"),
                Some((since, error)) => outln!(
                    "  health: cannot be polled since {}: {}",
                    countersign_approver::clock::format_time(*since),
                    visible(error)
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
