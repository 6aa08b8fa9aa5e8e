//! The gateway's storage seam: [`Store`] ([`Store::open`], [`Store::write`],
//! [`Store::write_publish`], [`Store::read`], [`Store::stats`]) and [`Tx`], the typed
//! transaction a write or read hands the domain.
//!
//! The domain modules never see SQL or a database type. Inside a write or read they get a
//! `&dyn Tx` and call its typed methods (`tx.request_signed(id)`, `tx.insert_decision(..)`,
//! `tx.consume_challenge(..)`, `tx.audit_append(..)`). [`Tx`] is the sum of one trait per owner
//! of rows, each defined with its row types and its SQLite statements in one module here:
//! [`requests`], [`decisions`] (the votes), [`challenges`], [`devices`], [`passkeys`],
//! [`pairing`] (invites, approvers, pairings), [`tokens`], [`reports`] (reports and blocks),
//! [`checkpoints`], [`events`] (the stored push events) and [`audit`] (the audit chain). The
//! SQLite engine itself (connections, group commit, the checkpointer, the schema and its
//! migrations) is `sqlite`.
//!
//! A second backend (the scale-out issue's PostgreSQL) implements the same owner traits for its
//! own transaction type, and `Store` dispatches to its engine; the domain modules do not change.
//!
//! The seam is synchronous, and the async boundary is the HTTP layer: handlers run the domain's
//! writes, and with them the transaction closures, on tokio's blocking pool (`http::blocking`);
//! short reads run inline, as reader connections never wait for the writer. A transaction
//! spans the domain's checks between its statements (a decision re-checks the device, consumes
//! the ceremony and counts the quorum in one), so a PostgreSQL backend holds a synchronous
//! client for the whole transaction (the `postgres` crate, the blocking wrapper of
//! `tokio-postgres`) rather than awaiting inside it.
//!
//! Events a write stores for devices are published to the hub (see `hub`) by the committer,
//! after the commit that made them durable, in commit order.

use std::path::Path;
use std::sync::Arc;

use countersign_protocol::audit::AuditEntry;
use countersign_protocol::Digest;

use crate::error::StoreError;
use crate::hub::{Hub, Pushed};

pub mod audit;
pub mod challenges;
pub mod checkpoints;
pub mod decisions;
pub mod devices;
pub mod events;
pub mod pairing;
pub mod passkeys;
pub mod reports;
pub mod requests;
mod sqlite;
pub mod tokens;

pub use audit::AuditRows;
pub use challenges::ChallengeRows;
pub use checkpoints::CheckpointRows;
pub use decisions::DecisionRows;
pub use devices::DeviceRows;
pub use events::EventRows;
pub use pairing::PairingRows;
pub use passkeys::PasskeyRows;
pub use reports::ReportRows;
pub use requests::RequestRows;
pub use sqlite::StoreStats;
pub use tokens::TokenRows;

/// A write's or read's transaction: every owner's rows. A read's transaction only reads (its
/// connection refuses changes).
pub trait Tx:
    RequestRows
    + DecisionRows
    + ChallengeRows
    + DeviceRows
    + PasskeyRows
    + PairingRows
    + TokenRows
    + ReportRows
    + CheckpointRows
    + EventRows
    + AuditRows
{
}

impl<T> Tx for T where
    T: RequestRows
        + DecisionRows
        + ChallengeRows
        + DeviceRows
        + PasskeyRows
        + PairingRows
        + TokenRows
        + ReportRows
        + CheckpointRows
        + EventRows
        + AuditRows
        + ?Sized
{
}

/// The gateway's database (the SQLite file `gateway.db`).
///
/// Every write runs inside a savepoint of a shared transaction. A writer that finishes while
/// other writers are already queued leaves the transaction open for them and waits; the last
/// writer of a batch commits it, so one fsync makes a whole batch durable. Nobody's write is
/// answered before the commit that contains it returned, and a write that fails is rolled back
/// to its savepoint without touching the others. Reads run on reader connections that see the
/// last commit and never wait for the writer.
pub struct Store {
    engine: sqlite::Sqlite,
}

impl Store {
    /// Opens (creating it owner-only if needed) and migrates the database at `path`; committed
    /// events are published to `hub`.
    pub fn open(path: &Path, hub: Arc<Hub>) -> Result<Store, StoreError> {
        Ok(Store {
            engine: sqlite::Sqlite::open(path, hub)?,
        })
    }

    /// Runs `f` in a transaction that commits if `f` returns `Ok`.
    pub fn write<T, E>(&self, f: impl FnOnce(&dyn Tx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.engine
            .write_publish(|tx| f(tx).map(|t| (t, Vec::new())))
    }

    /// Like [`Store::write`]; the events `f` returns are published to the hub once the write is
    /// committed, ordered exactly as the commits were.
    pub fn write_publish<T, E>(
        &self,
        f: impl FnOnce(&dyn Tx) -> Result<(T, Vec<Pushed>), E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.engine.write_publish(|tx| f(tx))
    }

    /// Runs a read-only `f` on a reader connection: it sees the last commit.
    pub fn read<T, E>(&self, f: impl FnOnce(&dyn Tx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.engine.read(|tx| f(tx))
    }

    /// Counts of the writer's work since the store opened (for benchmarks and diagnostics).
    pub fn stats(&self) -> StoreStats {
        self.engine.stats()
    }
}

/// Reads the whole audit chain in order, for verification and for tests (a function, so that
/// `store.read(audit_entries)` reads it).
pub fn audit_entries(tx: &dyn Tx) -> Result<Vec<(AuditEntry, Digest)>, StoreError> {
    tx.audit_entries()
}
