//! `pair` and `gateways`: pairing this device with a gateway from its link, and listing the
//! gateways it is paired with.

use std::process::ExitCode;

use countersign_approver::display::visible;
use countersign_approver::EngineError;
use countersign_protocol::PairingLink;

use crate::ctx::Ctx;
use crate::json;
use crate::out::outln;

pub async fn pair(ctx: &Ctx, link: &str, device_name: Option<String>) -> anyhow::Result<ExitCode> {
    let link = PairingLink::parse(link).map_err(EngineError::from)?;
    let mut auth = ctx.authenticator()?;
    let name = device_name
        .unwrap_or_else(|| countersign_approver::device_name(countersign_approver::Host::Cli));
    let g = ctx.engine.pair(&link, &name, auth.as_mut()).await?;
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

pub fn list(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    if !ctx.json {
        outln!("device key: {}", ctx.engine.key_location().describe());
    }
    for g in ctx.engine.gateways()? {
        if ctx.json {
            json::print(&json::Gateway::from(&g))?;
        } else {
            outln!(
                "{}  {}  approver {}  device {}  {}",
                &g.fingerprint[..16.min(g.fingerprint.len())],
                visible(&g.name),
                visible(&g.approver),
                g.device_id,
                g.url
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
