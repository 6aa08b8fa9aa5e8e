//! `connect hoop` and `disconnect`: a hoop.dev gateway as a connector beside the Countersign
//! gateways. The token comes from standard input or a file, never from the command line
//! (where other users of the machine could read it); it is kept where the device key is.

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use countersign_approver::display::visible;
use zeroize::Zeroizing;

use crate::ctx::Ctx;
use crate::json;
use crate::out::outln;

/// Reads the token: the first line of standard input, or of `file`.
fn read_token(stdin: bool, file: Option<&Path>) -> anyhow::Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    match (stdin, file) {
        (true, None) => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the token from standard input")?;
        }
        (false, Some(path)) => {
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .with_context(|| format!("reading the token from {}", path.display()))?;
        }
        _ => anyhow::bail!("give the token with --token-stdin or --token-file"),
    }
    Ok(Zeroizing::new(
        text.lines().next().unwrap_or("").trim().to_owned(),
    ))
}

/// `countersign connect hoop --url <url> (--token-stdin | --token-file <file>)`.
pub async fn hoop(
    ctx: &Ctx,
    url: &url::Url,
    token_stdin: bool,
    token_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let token = read_token(token_stdin, token_file)?;
    // The passkey that will confirm every decision on this connection's reviews.
    let mut auth = ctx.authenticator()?;
    let c = ctx
        .engine
        .connect_hoop(url.clone(), token, auth.as_mut())
        .await?;
    if ctx.json {
        json::print(&json::HoopGateway::from(&c))?;
    } else {
        outln!("connected to hoop at {}", c.url);
        outln!(
            "as:          {} ({})",
            visible(&c.user.email),
            visible(&c.user.name)
        );
        outln!("groups:      {}", visible(&c.user.groups.join(", ")));
        outln!("token kept:  {}", c.token.describe());
        outln!(
            "passkey:     registered with {} for this connection",
            auth.kind().describe()
        );
        outln!("connection:  {}", c.id);
        outln!(
            "hoop signs nothing: its reviews are vouched for only by TLS to {}.",
            c.url
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `countersign disconnect <connection>`.
pub fn disconnect(ctx: &Ctx, selector: &str) -> anyhow::Result<ExitCode> {
    let c = ctx.engine.disconnect_hoop(selector)?;
    if ctx.json {
        outln!(
            "{}",
            serde_json::json!({"disconnected": c.id, "url": c.url.as_str()})
        );
    } else {
        outln!("disconnected hoop at {}; its token is deleted", c.url);
    }
    Ok(ExitCode::SUCCESS)
}
