//! Requester and auditor tokens: `countersign-gateway token create <name> [--auditor]` issues
//! one; only its SHA-256 is stored. A requester token's name is the requester identity
//! approvers see; an auditor token only reads (evidence bundles and the gateway log) and can
//! never create or withdraw a request.

use axum::http::HeaderMap;
use base64::Engine as _;
use countersign_protocol::api::ErrorCode;
use sha2::Digest as _;

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::store::Tx;

/// Tokens start with this prefix so they are recognisable in secret scanners.
pub const TOKEN_PREFIX: &str = "cst_";

fn hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic())
}

/// What a requester token says about its holder, for the policy: the team, and the
/// environments it may ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAttributes {
    pub team: Option<String>,
    #[serde(default)]
    pub environments: Vec<String>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Creates, reads and withdraws its own requests, and reads their evidence.
    Requester,
    /// Reads every request's evidence, the gateway log and the devices' checkpoints; nothing
    /// else.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Auditor => "auditor",
        }
    }

    fn parse(s: &str) -> Result<Role, ApiError> {
        match s {
            "requester" => Ok(Role::Requester),
            "auditor" => Ok(Role::Auditor),
            other => Err(ApiError::internal(
                "stored token role",
                format!("unknown role {other:?}"),
            )),
        }
    }
}

/// A token as `token list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenListing {
    pub name: String,
    pub created_at: i64,
    pub revoked: bool,
    pub role: Role,
    #[serde(flatten)]
    pub attributes: TokenAttributes,
}

/// Creates a token for `name` without attributes and returns it. The token is shown once.
pub fn create(gw: &Gateway, name: &str) -> Result<String, ApiError> {
    create_with(gw, name, &TokenAttributes::default())
}

/// Creates a requester token for `name` with `attributes` and returns it. The token is shown
/// once.
pub fn create_with(
    gw: &Gateway,
    name: &str,
    attributes: &TokenAttributes,
) -> Result<String, ApiError> {
    create_token(gw, name, attributes, Role::Requester)
}

/// Creates an auditor token for `name` and returns it. The token is shown once.
pub fn create_auditor(gw: &Gateway, name: &str) -> Result<String, ApiError> {
    create_token(gw, name, &TokenAttributes::default(), Role::Auditor)
}

fn create_token(
    gw: &Gateway,
    name: &str,
    attributes: &TokenAttributes,
    role: Role,
) -> Result<String, ApiError> {
    if !valid_name(name) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidName,
            "A requester name is 1 to 128 printable ASCII characters without spaces.",
        ));
    }
    if let Some((prefix, _)) = crate::directory::INTEGRATION_REQUESTERS
        .iter()
        .find(|(p, _)| name.starts_with(p))
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidName,
            format!("Requester names starting with {prefix} are the integrations' (docs/kubernetes.md, docs/github.md); a token cannot take one."),
        ));
    }
    let mut attributes = attributes.clone();
    attributes.environments.sort();
    attributes.environments.dedup();
    for n in attributes.team.iter().chain(&attributes.environments) {
        if !valid_name(n) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidName,
                format!("{n:?}: a team or environment is 1 to 128 printable ASCII characters without spaces."),
            ));
        }
    }
    let environments = serde_json::to_string(&attributes.environments)
        .map_err(|e| ApiError::internal("token environments", e))?;
    let raw: [u8; 32] = rand::random();
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let now = gw.now();
    gw.store.write(|tx| -> Result<(), ApiError> {
        tx.put_token(
            name,
            &hash(&token),
            now,
            attributes.team.as_deref(),
            &environments,
            role.as_str(),
        )?;
        tx.audit_append(
            now,
            "token.created",
            None,
            serde_json::json!({"name": name, "team": attributes.team, "environments": attributes.environments, "role": role.as_str()}),
        )?;
        Ok(())
    })?;
    Ok(token)
}

pub fn revoke(gw: &Gateway, name: &str) -> Result<bool, ApiError> {
    let now = gw.now();
    gw.store.write(|tx| -> Result<bool, ApiError> {
        let revoked = tx.revoke_token(name, now)?;
        if revoked {
            tx.audit_append(
                now,
                "token.revoked",
                None,
                serde_json::json!({"name": name}),
            )?;
        }
        Ok(revoked)
    })
}

/// A stored token's attributes (`environments` as the JSON array the store keeps).
fn attributes_of(team: Option<String>, environments: &str) -> Result<TokenAttributes, ApiError> {
    Ok(TokenAttributes {
        team,
        environments: serde_json::from_str(environments)
            .map_err(|e| ApiError::internal("stored token environments", e))?,
    })
}

/// Who the token `name` is to a policy: its attributes and the directory person it belongs
/// to. A name without a token is a requester with no attributes.
pub fn requester(tx: &dyn Tx, name: &str) -> Result<crate::policy::Requester, ApiError> {
    let attributes = match tx.token(name)? {
        Some(r) => attributes_of(r.team, &r.environments)?,
        None => TokenAttributes::default(),
    };
    Ok(crate::policy::Requester {
        name: name.to_owned(),
        person: crate::directory::requester_person(tx, name)?,
        team: attributes.team,
        environments: attributes.environments,
        groups: Vec::new(),
    })
}

/// Every requester token, by name.
pub fn list(gw: &Gateway) -> Result<Vec<TokenListing>, ApiError> {
    let rows = gw.store.read(|c| c.tokens())?;
    rows.into_iter()
        .map(|r| {
            Ok(TokenListing {
                attributes: attributes_of(r.team, &r.environments)?,
                role: Role::parse(&r.role)?,
                name: r.name,
                created_at: r.created_at,
                revoked: r.revoked,
            })
        })
        .collect()
}

/// The requester identity behind a `Bearer` requester token; an auditor token is refused
/// (`read_only_token`).
pub fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<String, ApiError> {
    match authenticate_any(gw, headers)? {
        (name, Role::Requester) => Ok(name),
        (_, Role::Auditor) => Err(ApiError::forbidden(
            ErrorCode::ReadOnlyToken,
            "This is an auditor token: it reads evidence and the gateway log, and cannot create or change requests.",
        )),
    }
}

/// The name and role behind a `Bearer` token of either role.
pub fn authenticate_any(gw: &Gateway, headers: &HeaderMap) -> Result<(String, Role), ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized(
                ErrorCode::TokenRequired,
                "This endpoint needs a requester token (Authorization: Bearer cst_...).",
            )
        })?;
    let h = hash(token);
    let row = gw
        .store
        .read(|c| -> Result<_, ApiError> { Ok(c.token_by_hash(&h)?) })?;
    match row {
        Some((name, None, role)) => Ok((name, Role::parse(&role)?)),
        Some((_, Some(_), _)) => Err(ApiError::unauthorized(
            ErrorCode::TokenRevoked,
            "This requester token was revoked.",
        )),
        None => Err(ApiError::unauthorized(
            ErrorCode::UnknownToken,
            "This requester token is not known to the gateway.",
        )),
    }
}
