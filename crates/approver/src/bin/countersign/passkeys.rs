//! `passkey add|list|remove`: the approver's passkeys at a gateway. Adding a backup key runs
//! two ceremonies: one with a key already registered (the proof), then the new key's
//! registration; on a terminal the person is asked to plug the new key in between.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use countersign_approver::display::visible;
use countersign_approver::EngineError;
use countersign_protocol::PasskeyList;

use crate::ctx::Ctx;
use crate::out::outln;

/// The gateway `selector` names, or the only one paired.
pub fn gateway(ctx: &Ctx, selector: Option<String>) -> anyhow::Result<String> {
    if let Some(s) = selector {
        return Ok(ctx.engine.gateway(&s)?.fingerprint);
    }
    let all = ctx.engine.gateways()?;
    match all.as_slice() {
        [one] => Ok(one.fingerprint.clone()),
        [] => Err(EngineError::UnknownGateway("(none is paired)".into()).into()),
        _ => Err(EngineError::InvalidInput(
            "several gateways are paired; name one with --gateway <fingerprint prefix>".into(),
        )
        .into()),
    }
}

fn print(ctx: &Ctx, list: &PasskeyList) -> anyhow::Result<()> {
    if ctx.json {
        outln!("{}", serde_json::to_string(list)?);
        return Ok(());
    }
    outln!(
        "passkeys of {}: {}",
        visible(&list.approver),
        list.passkeys.len()
    );
    for p in &list.passkeys {
        outln!(
            "  {}  aaguid {}  created {}  last used {}",
            p.cred_id,
            p.aaguid.as_deref().unwrap_or("unknown"),
            countersign_approver::clock::format_time(p.created_at),
            p.last_used_at
                .map(countersign_approver::clock::format_time)
                .unwrap_or_else(|| "never".into()),
        );
    }
    Ok(())
}

pub async fn add(ctx: &Ctx, gateway: &str) -> anyhow::Result<ExitCode> {
    let mut auth = ctx.authenticator()?;
    let interactive = !ctx.pin_stdin && std::io::stdin().is_terminal();
    eprintln!("First confirm with a security key already registered for this approver.");
    let mut between = move || -> Result<(), EngineError> {
        if interactive {
            eprint!(
                "Now plug in the new security key (you may unplug the other), then press Enter. "
            );
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| EngineError::InvalidInput(format!("cannot read the terminal: {e}")))?;
        } else {
            eprintln!("Now the new security key.");
        }
        Ok(())
    };
    let list = ctx
        .engine
        .add_passkey(gateway, auth.as_mut(), &mut between)
        .await?;
    if !ctx.json {
        outln!("passkey added");
    }
    print(ctx, &list)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn list(ctx: &Ctx, gateway: &str) -> anyhow::Result<ExitCode> {
    let list = ctx.engine.passkeys(gateway).await?;
    print(ctx, &list)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn remove(ctx: &Ctx, gateway: &str, cred_id: &str) -> anyhow::Result<ExitCode> {
    let list = ctx.engine.remove_passkey(gateway, cred_id).await?;
    if !ctx.json {
        outln!("passkey {cred_id} removed");
    }
    print(ctx, &list)?;
    Ok(ExitCode::SUCCESS)
}
