//! hoop.dev gateways as connectors, beside the Countersign gateways: hoop holds database
//! queries and sessions for review, and its reviews can arrive in the same inbox.
//!
//! A connection is a hoop gateway's URL and a token (an API key or an access token) that
//! `GET /api/userinfo` and `GET /api/sessions` accept. [`Engine::connect_hoop`] checks both,
//! keeps the token where the device key is ([`secret`]), and stores the connection with who
//! it is connected as (table `hoop_connections`) and its audit entry in one transaction. The
//! token is never logged, audited or printed.
//!
//! hoop signs nothing: what a connection fetches is vouched for only by TLS to the URL the
//! person gave. Its items are labelled so, never as a Countersign gateway's signed requests.

pub mod api;
pub mod decide;
pub mod inbox;
pub mod passkey;
pub(crate) mod poll;
pub mod secret;

use rusqlite::{params, OptionalExtension as _};
use serde::Serialize;
use url::Url;
use zeroize::Zeroizing;

use crate::audit::{self, kind};
use crate::authenticator::Authenticator;
use crate::engine::Engine;
use crate::error::EngineError;
use api::{HoopClient, UserInfo};
use secret::TokenPlace;

/// One connected hoop gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoopConnection {
    /// This device's id of the connection.
    pub id: String,
    /// hoop's address, as given (`https://hoop.example.com`).
    pub url: Url,
    /// Who the token is, as hoop said when the connection was made.
    pub user: UserInfo,
    /// Where the token is kept.
    #[serde(skip)]
    pub token: TokenPlace,
    pub connected_at: i64,
}

/// Whether a connection's last poll reached hoop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoopHealth {
    /// Since when polls have failed, and why the newest failed; `None` while they succeed.
    pub unreachable: Option<(i64, String)>,
}

impl HoopConnection {
    /// The name shown for it: its host.
    pub fn name(&self) -> String {
        self.url.host_str().unwrap_or("hoop").to_owned()
    }
}

/// A hoop URL must be HTTPS, or plain HTTP to this machine (a local hoop, the tests).
fn check_url(url: &Url) -> Result<(), EngineError> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(EngineError::InvalidInput(format!(
            "{url} is not an https:// address (plain http is only for this machine)"
        ))),
    }
}

fn connection_of(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, String, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn decode(
    (id, url, user, token, connected_at): (String, String, String, String, i64),
) -> Result<HoopConnection, EngineError> {
    Ok(HoopConnection {
        url: url
            .parse()
            .map_err(|e| EngineError::Corrupt(format!("hoop connection {id}'s URL: {e}")))?,
        user: serde_json::from_str(&user)
            .map_err(|e| EngineError::Corrupt(format!("hoop connection {id}'s user: {e}")))?,
        token: TokenPlace::parse(&token)?,
        connected_at,
        id,
    })
}

const COLUMNS: &str = "id, url, user, token, connected_at";

impl Engine {
    /// Connects a hoop gateway with `token`: checks that hoop accepts it for who it is
    /// (`GET /api/userinfo`) and for listing sessions (`GET /api/sessions`), keeps the token,
    /// and stores the connection, audited `hoop.connected`. A URL already connected is
    /// connected again with the new token.
    pub async fn connect_hoop(
        &self,
        url: Url,
        token: Zeroizing<String>,
        authenticator: &mut dyn Authenticator,
    ) -> Result<HoopConnection, EngineError> {
        check_url(&url)?;
        let token = Zeroizing::new(token.trim().to_owned());
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EngineError::InvalidInput(
                "the hoop token is empty or has spaces in it".into(),
            ));
        }
        let client = HoopClient::new(self.inner.http.clone(), url.clone(), token.clone());
        let user = client.userinfo().await?;
        // The listing the connector polls must be allowed too.
        client.pending(&user.email).await?;
        // The passkey that confirms every decision on this connection's reviews.
        let passkey = passkey::register(
            authenticator,
            &format!("{}@{}", user.email, url.host_str().unwrap_or("hoop")),
        )?;
        let passkey_json =
            serde_json::to_string(&passkey).map_err(|e| EngineError::Corrupt(e.to_string()))?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let place = secret::store(&self.inner.data_dir, self.key_location(), &id, &token)?;
        let now = self.now();
        let user_json =
            serde_json::to_string(&user).map_err(|e| EngineError::Corrupt(e.to_string()))?;
        let replaced = {
            let mut db = self.db();
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let old: Option<(String, String)> = tx
                .query_row(
                    "SELECT id, token FROM hoop_connections WHERE url = ?1",
                    params![url.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if old.is_some() {
                tx.execute(
                    "DELETE FROM hoop_connections WHERE url = ?1",
                    params![url.as_str()],
                )?;
            }
            tx.execute(
                "INSERT INTO hoop_connections (id, url, user, token, passkey, connected_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    url.as_str(),
                    user_json,
                    place.as_stored(),
                    passkey_json,
                    now
                ],
            )?;
            audit::append(
                &tx,
                now,
                kind::HOOP_CONNECTED,
                None,
                serde_json::json!({
                    "connection": id,
                    "url": url.as_str(),
                    "user": {"id": user.id, "email": user.email, "groups": user.groups},
                    "token_kept_in": place.describe(),
                    "authenticator": authenticator.kind(),
                    "replaces": old.as_ref().map(|(old_id, _)| old_id),
                }),
            )?;
            tx.commit()?;
            old
        };
        self.inner
            .hoop_connected
            .send_modify(|n| *n = n.wrapping_add(1));
        if let Some((_, old_place)) = replaced {
            if let Err(e) =
                TokenPlace::parse(&old_place).and_then(|p| secret::forget(&self.inner.data_dir, &p))
            {
                tracing::warn!(error = %e, "the replaced hoop token could not be deleted");
            }
        }
        Ok(HoopConnection {
            id,
            url,
            user,
            token: place,
            connected_at: now,
        })
    }

    /// Every hoop connection, oldest first.
    pub fn hoop_connections(&self) -> Result<Vec<HoopConnection>, EngineError> {
        let db = self.db();
        let mut stmt = db.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM hoop_connections ORDER BY connected_at, id"
        ))?;
        let rows = stmt
            .query_map([], connection_of)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(decode).collect()
    }

    /// The hoop connection whose id, id prefix, URL or host is `selector`.
    pub fn hoop_connection(&self, selector: &str) -> Result<HoopConnection, EngineError> {
        let all = self.hoop_connections()?;
        let matching: Vec<HoopConnection> = all
            .into_iter()
            .filter(|c| {
                c.id.starts_with(selector)
                    || c.url.as_str().trim_end_matches('/') == selector.trim_end_matches('/')
                    || c.name() == selector
            })
            .collect();
        match matching.len() {
            0 => Err(EngineError::UnknownGateway(selector.to_owned())),
            1 => Ok(matching
                .into_iter()
                .next()
                .ok_or_else(|| EngineError::UnknownGateway(selector.to_owned()))?),
            _ => Err(EngineError::AmbiguousGateway(selector.to_owned())),
        }
    }

    /// Whether connection `id`'s polls reach hoop.
    pub fn hoop_health(&self, id: &str) -> Result<HoopHealth, EngineError> {
        let row: (Option<i64>, Option<String>) = self.db().query_row(
            "SELECT unreachable_since, unreachable_error FROM hoop_connections WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(HoopHealth {
            unreachable: match row {
                (Some(since), Some(error)) => Some((since, error)),
                _ => None,
            },
        })
    }

    /// Records a poll's outcome; writes only when it changes what is recorded.
    pub(crate) fn hoop_record_health(
        &self,
        id: &str,
        failure: Option<&str>,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let held = self.hoop_health(id)?.unreachable;
        match (failure, held) {
            (None, None) => {}
            (None, Some(_)) => {
                self.db().execute(
                    "UPDATE hoop_connections SET unreachable_since = NULL, unreachable_error = NULL \
                     WHERE id = ?1",
                    params![id],
                )?;
            }
            (Some(e), Some((_, held))) if held == e => {}
            (Some(e), held) => {
                let since = held.map_or(now, |(since, _)| since);
                self.db().execute(
                    "UPDATE hoop_connections SET unreachable_since = ?2, unreachable_error = ?3 \
                     WHERE id = ?1",
                    params![id, since, e],
                )?;
            }
        }
        Ok(())
    }

    /// A client of connection `c`, with its token read from where it is kept.
    pub fn hoop_client(&self, c: &HoopConnection) -> Result<HoopClient, EngineError> {
        let token = secret::load(&self.inner.data_dir, &c.token)?;
        Ok(HoopClient::new(
            self.inner.http.clone(),
            c.url.clone(),
            token,
        ))
    }

    /// Removes a hoop connection and its token, audited `hoop.disconnected`.
    pub fn disconnect_hoop(&self, selector: &str) -> Result<HoopConnection, EngineError> {
        let c = self.hoop_connection(selector)?;
        let now = self.now();
        {
            let mut db = self.db();
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM hoop_reviews WHERE connection = ?1",
                params![c.id],
            )?;
            tx.execute("DELETE FROM hoop_connections WHERE id = ?1", params![c.id])?;
            audit::append(
                &tx,
                now,
                kind::HOOP_DISCONNECTED,
                None,
                serde_json::json!({"connection": c.id, "url": c.url.as_str()}),
            )?;
            tx.commit()?;
        }
        self.inner
            .hoop_connected
            .send_modify(|n| *n = n.wrapping_add(1));
        secret::forget(&self.inner.data_dir, &c.token)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hoop_url_is_https_or_this_machine() {
        let ok = |u: &str| check_url(&u.parse().unwrap()).is_ok();
        assert!(ok("https://hoop.example.com"));
        assert!(ok("http://127.0.0.1:8009"));
        assert!(ok("http://localhost:8009"));
        assert!(!ok("http://hoop.example.com"));
        assert!(!ok("ftp://hoop.example.com"));
    }
}
