//! hoop reviews in the inbox (table `hoop_reviews`): each review a connection fetched, with its
//! session as read in full when it arrived (the exact script), and the review as hoop last
//! reported it. [`HoopItem`] is what the hosts show: the requester, the action, the resource,
//! the detail, the reason, the groups against hoop's minimum, a jit review's access, hoop's
//! own risk analysis, and where it came from, unsigned.

use rusqlite::{params, OptionalExtension as _};
use serde::Serialize;
use url::Url;

use super::api::{Review, Session};
use crate::engine::Engine;
use crate::error::EngineError;

/// One hoop review in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoopItem {
    /// The connection it came through.
    pub connection: String,
    /// The hoop gateway's address.
    pub url: Url,
    /// The review, as hoop last reported it.
    pub review: Review,
    /// The session, as read when the review arrived.
    pub session: Session,
    pub received_at: i64,
    pub updated_at: i64,
}

impl HoopItem {
    pub fn id(&self) -> &str {
        &self.review.id
    }

    /// `hoop.connect` for a session (a jit review), `hoop.exec` for a command.
    pub fn action(&self) -> &'static str {
        if self.session.verb == "connect" {
            "hoop.connect"
        } else {
            "hoop.exec"
        }
    }

    /// The connection and its subtype: `pgprod (postgres)`.
    pub fn resource(&self) -> String {
        match self.session.connection_subtype.as_str() {
            "" => self.session.connection.clone(),
            sub => format!("{} ({sub})", self.session.connection),
        }
    }

    /// Exactly what will run: the session's script.
    pub fn detail(&self) -> &str {
        self.session.script.as_ref().map_or("", |s| s.data.as_str())
    }

    /// The session's metadata (where hoop keeps the justification), `key: value` per line.
    pub fn reason(&self) -> String {
        self.session
            .metadata
            .iter()
            .flatten()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Who asked: the session owner's email.
    pub fn requester(&self) -> &str {
        &self.session.user
    }

    pub fn is_pending(&self) -> bool {
        self.review.status == "PENDING"
    }

    /// What the item's origin vouches for: hoop signs nothing, so only the connection it was
    /// fetched over (TLS, or plain HTTP to this machine).
    pub fn provenance(&self) -> String {
        if self.url.scheme() == "https" {
            format!("unsigned: fetched over TLS from {}", self.url)
        } else {
            format!(
                "unsigned: fetched over plain HTTP from {} (this machine)",
                self.url
            )
        }
    }

    /// The hoop gateway's name as shown: its host.
    pub fn gateway_name(&self) -> &str {
        self.url.host_str().unwrap_or("hoop")
    }

    /// A one-line summary: hoop's analysis title when it made one, else the script's first
    /// non-blank line.
    pub fn summary(&self) -> &str {
        match &self.session.ai_analysis {
            Some(ai) if !ai.title.trim().is_empty() => &ai.title,
            _ => self
                .detail()
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or(""),
        }
    }

    /// hoop's own risk level of the session; `None` when hoop made no analysis or named a level
    /// other than low, medium, high or critical.
    pub fn risk(&self) -> Option<countersign_protocol::Risk> {
        use countersign_protocol::Risk;
        let level = self
            .session
            .ai_analysis
            .as_ref()?
            .risk_level
            .to_ascii_lowercase();
        [Risk::Low, Risk::Medium, Risk::High, Risk::Critical]
            .into_iter()
            .find(|r| r.as_str() == level)
    }

    /// When hoop created the review (unix seconds), or when it arrived here if hoop's time
    /// does not parse.
    pub fn created_at(&self) -> i64 {
        super::api::unix_time(self.review.created_at.as_deref()).unwrap_or(self.received_at)
    }

    /// SHA-256 (hex) of the script: what a decision on it is bound to.
    pub fn script_sha256(&self) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(self.detail().as_bytes()))
    }
}

/// A stored row: `(review id, status)` of each review of a connection.
pub(crate) fn known(
    engine: &Engine,
    connection: &str,
) -> Result<Vec<(String, String)>, EngineError> {
    let db = engine.db();
    let mut stmt =
        db.prepare_cached("SELECT review_id, status FROM hoop_reviews WHERE connection = ?1")?;
    let rows = stmt
        .query_map(params![connection], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn item_of(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, String, i64, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn decode(
    (connection, url, review, session, received_at, updated_at): (
        String,
        String,
        String,
        String,
        i64,
        i64,
    ),
) -> Result<HoopItem, EngineError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        EngineError::Corrupt(format!("a stored hoop review's {what}: {e}"))
    };
    Ok(HoopItem {
        url: url.parse().map_err(|e| bad("URL", &e))?,
        review: serde_json::from_str(&review).map_err(|e| bad("review", &e))?,
        session: serde_json::from_str(&session).map_err(|e| bad("session", &e))?,
        connection,
        received_at,
        updated_at,
    })
}

const SELECT: &str =
    "SELECT r.connection, c.url, r.review, r.session, r.received_at, r.updated_at \
     FROM hoop_reviews r JOIN hoop_connections c ON c.id = r.connection";

impl Engine {
    /// The hoop reviews in the inbox, newest first: the pending ones, or all with `all`.
    pub fn hoop_items(&self, all: bool) -> Result<Vec<HoopItem>, EngineError> {
        let db = self.db();
        let sql = if all {
            format!("{SELECT} ORDER BY r.received_at DESC, r.review_id")
        } else {
            format!("{SELECT} WHERE r.status = 'PENDING' ORDER BY r.received_at DESC, r.review_id")
        };
        let mut stmt = db.prepare_cached(&sql)?;
        let rows = stmt
            .query_map([], item_of)?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(db);
        rows.into_iter().map(decode).collect()
    }

    /// The review `review_id` exactly, as connection `connection` fetched it.
    pub fn hoop_item_in(
        &self,
        connection: &str,
        review_id: &str,
    ) -> Result<Option<HoopItem>, EngineError> {
        let db = self.db();
        let row = db
            .query_row(
                &format!("{SELECT} WHERE r.connection = ?1 AND r.review_id = ?2"),
                params![connection, review_id],
                item_of,
            )
            .optional()?;
        drop(db);
        row.map(decode).transpose()
    }

    /// The hoop reviews whose id is exactly `review_id` (one per connection that has it).
    pub fn hoop_items_with_id(&self, review_id: &str) -> Result<Vec<HoopItem>, EngineError> {
        let db = self.db();
        let mut stmt = db.prepare_cached(&format!("{SELECT} WHERE r.review_id = ?1"))?;
        let rows = stmt
            .query_map(params![review_id], item_of)?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(db);
        rows.into_iter().map(decode).collect()
    }

    /// The hoop review whose id (or unique id prefix) is `id`, if there is one: an exact id
    /// first, so a review whose id is another's prefix is still found.
    pub fn hoop_item(&self, id: &str) -> Result<Option<HoopItem>, EngineError> {
        let mut exact = self.hoop_items_with_id(id)?;
        match exact.len() {
            0 => {}
            1 => return Ok(exact.pop()),
            _ => return Err(EngineError::AmbiguousRequest(id.to_owned())),
        }
        let matching: Vec<HoopItem> = self
            .hoop_items(true)?
            .into_iter()
            .filter(|i| i.review.id.starts_with(id))
            .collect();
        match matching.len() {
            0 => Ok(None),
            1 => Ok(matching.into_iter().next()),
            _ => Err(EngineError::AmbiguousRequest(id.to_owned())),
        }
    }

    /// The stored review JSON of `(connection, review id)`.
    pub(crate) fn hoop_stored_review(
        &self,
        connection: &str,
        review_id: &str,
    ) -> Result<Option<String>, EngineError> {
        Ok(self
            .db()
            .query_row(
                "SELECT review FROM hoop_reviews WHERE connection = ?1 AND review_id = ?2",
                params![connection, review_id],
                |r| r.get(0),
            )
            .optional()?)
    }
}
