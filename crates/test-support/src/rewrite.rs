//! What a dishonest operator of a stopped gateway can do to its database: edit audit entries
//! and recompute everything that would betray the edit (the hash chain, the log's tree, its
//! checkpoints and their cosignatures), so that the gateway signs the rewritten log on its
//! next start as if it had always been so. Only a checkpoint someone kept from before, a
//! witness, can catch it.
//!
//! The database is reached as its operator would, beside the gateway: the SQLite file, or the
//! PostgreSQL database of `database_url` ([`RawDb`]).

use std::path::Path;

use countersign_gateway::config::Config;
use countersign_protocol::audit::{hash_canonical, AuditEntry, GENESIS};
use countersign_protocol::canonical::to_canonical_bytes;

/// A gateway's database opened directly, not through the gateway.
pub enum RawDb {
    Sqlite(rusqlite::Connection),
    Postgres {
        client: tokio_postgres::Client,
        /// Drives the connection; shut down in the background (a test may drop it inside its
        /// own runtime).
        rt: Option<tokio::runtime::Runtime>,
    },
}

impl RawDb {
    /// The database of the gateway `config` describes.
    pub fn of(config: &Config) -> RawDb {
        match &config.database_url {
            None => RawDb::sqlite(&config.data_dir.join("gateway.db")),
            Some(url) => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                let url = url.clone();
                let client = futures::executor::block_on(rt.spawn(async move {
                    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                    tokio::spawn(conn);
                    client
                }))
                .unwrap();
                RawDb::Postgres {
                    client,
                    rt: Some(rt),
                }
            }
        }
    }

    pub fn sqlite(path: &Path) -> RawDb {
        RawDb::Sqlite(rusqlite::Connection::open(path).unwrap())
    }

    /// The one integer a query such as `SELECT count(*) ...` answers.
    pub fn count(&self, sql: &str) -> i64 {
        match self {
            RawDb::Sqlite(db) => db.query_row(sql, [], |r| r.get(0)).unwrap(),
            RawDb::Postgres { client, .. } => {
                futures::executor::block_on(client.query_one(sql, &[]))
                    .unwrap()
                    .get(0)
            }
        }
    }

    /// The audit rows as stored: (seq, canonical text), in order.
    pub fn audit_rows(&self) -> Vec<(i64, String)> {
        const SQL: &str = "SELECT seq, entry FROM audit ORDER BY seq";
        match self {
            RawDb::Sqlite(db) => {
                let mut st = db.prepare(SQL).unwrap();
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            }
            RawDb::Postgres { client, .. } => futures::executor::block_on(client.query(SQL, &[]))
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        }
    }

    /// Replaces audit entry `seq`'s text, and its hash when one is given.
    pub fn set_audit(&self, seq: i64, entry: &str, hash: Option<&str>) {
        match (self, hash) {
            (RawDb::Sqlite(db), None) => db
                .execute(
                    "UPDATE audit SET entry = ?1 WHERE seq = ?2",
                    rusqlite::params![entry, seq],
                )
                .map(drop),
            (RawDb::Sqlite(db), Some(h)) => db
                .execute(
                    "UPDATE audit SET entry = ?1, hash = ?2 WHERE seq = ?3",
                    rusqlite::params![entry, h, seq],
                )
                .map(drop),
            (RawDb::Postgres { client, .. }, None) => {
                futures::executor::block_on(client.execute(
                    "UPDATE audit SET entry = $1 WHERE seq = $2",
                    &[&entry, &seq],
                ))
                .unwrap();
                Ok(())
            }
            (RawDb::Postgres { client, .. }, Some(h)) => {
                futures::executor::block_on(client.execute(
                    "UPDATE audit SET entry = $1, hash = $2 WHERE seq = $3",
                    &[&entry, &h, &seq],
                ))
                .unwrap();
                Ok(())
            }
        }
        .unwrap();
    }

    /// Runs statements without parameters.
    pub fn batch(&self, sql: &str) {
        match self {
            RawDb::Sqlite(db) => db.execute_batch(sql).unwrap(),
            RawDb::Postgres { client, .. } => {
                futures::executor::block_on(client.batch_execute(sql)).unwrap()
            }
        }
    }
}

impl Drop for RawDb {
    fn drop(&mut self) {
        if let RawDb::Postgres { rt, .. } = self {
            if let Some(rt) = rt.take() {
                rt.shutdown_background();
            }
        }
    }
}

/// Rewrites every audit entry of the gateway database at `db` through `edit` (entry text in,
/// entry text out), recomputes the chain, and removes the tree hashes, checkpoints,
/// cosignatures and checkpoint events, which the gateway rebuilds when it opens the store.
/// Returns how many entries `edit` changed.
pub fn rewrite_gateway_log(db: &Path, edit: impl Fn(&AuditEntry) -> Option<AuditEntry>) -> usize {
    rewrite_log(&RawDb::sqlite(db), edit)
}

/// [`rewrite_gateway_log`] on the database of the gateway `config` describes, SQLite or
/// PostgreSQL.
pub fn rewrite_gateway_log_of(
    config: &Config,
    edit: impl Fn(&AuditEntry) -> Option<AuditEntry>,
) -> usize {
    rewrite_log(&RawDb::of(config), edit)
}

fn rewrite_log(db: &RawDb, edit: impl Fn(&AuditEntry) -> Option<AuditEntry>) -> usize {
    let mut prev = GENESIS;
    let mut changed = 0;
    for (seq, text) in db.audit_rows() {
        let entry: AuditEntry = serde_json::from_str(&text).unwrap();
        let mut entry = match edit(&entry) {
            Some(e) => {
                changed += 1;
                e
            }
            None => entry,
        };
        entry.prev = prev;
        let text = String::from_utf8(to_canonical_bytes(&entry).unwrap()).unwrap();
        prev = hash_canonical(text.as_bytes());
        db.set_audit(seq, &text, Some(&prev.to_hex()));
    }
    db.batch(
        "DELETE FROM log_hashes; DELETE FROM log_checkpoints; DELETE FROM log_cosignatures; \
         DELETE FROM events WHERE approver = '*';",
    );
    changed
}
