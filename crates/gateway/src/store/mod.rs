//! The gateway's storage seam: [`Store`] ([`Store::open`], [`Store::write`],
//! [`Store::write_publish`], [`Store::read`], [`Store::stats`]) and [`Tx`], the typed
//! transaction a write or read hands the domain.
//!
//! The domain modules never see SQL or a database type. Inside a write or read they get a
//! `&dyn Tx` and call its typed methods (`tx.request_signed(id)`, `tx.insert_decision(..)`,
//! `tx.consume_challenge(..)`, `tx.audit_append(..)`). [`Tx`] is the sum of one trait per owner
//! of rows, each defined with its row types and its statements in one module here:
//! [`requests`], [`decisions`] (the votes), [`challenges`], [`devices`], [`passkeys`],
//! [`pairing`] (invites, approvers, pairings), [`tokens`], [`reports`] (reports and blocks),
//! [`checkpoints`], [`events`] (the stored push events), [`audit`] (the audit chain and its
//! tree), [`witnesses`] (the devices' cosignatures of the log), [`admission`] (the
//! operations the Kubernetes webhook holds), [`deliveries`] (outgoing webhooks) and [`github`]
//! (deployments held for a protection rule). Each owner implements its trait once, for
//! [`sql::Db`], the statement handle: parameters and rows there name no database crate, so
//! the owners' code is the same whatever engine runs it. The SQLite engine itself
//! (connections, group commit, the checkpointer, the schema and its migrations) is `sqlite`.
//!
//! A second backend (the scale-out issue's PostgreSQL) adds its engine beside `sqlite`, with
//! its own migrations, and gives [`sql::Db`] a connection of its kind; a statement the two
//! dialects write differently keeps both variants in its owner's module. `Store` dispatches to
//! the engine it opened; the domain modules do not change.
//! What a backend must guarantee about ordering is stated on [`Tx`].
//!
//! The transactions are synchronous, and the async edge is the HTTP layer. A transaction
//! spans the domain's checks between its statements (a decision re-checks the device,
//! consumes the ceremony and counts the quorum in one), so the closures given to
//! [`Store::write`], [`Store::write_publish`] and [`Store::read`] are synchronous, and so is
//! every method of [`Tx`]. The gateway always runs them on tokio's blocking pool, never on an
//! async worker thread: async code reaches the store only through `Gateway::blocking` (the
//! HTTP handlers, authentication included, the stream's backlog, the long poll and the
//! expiry sweeper), and the binary opens the store and runs its administrative commands on
//! the blocking pool too. The PostgreSQL engine awaits each statement of a transaction on the
//! calling thread (`futures::executor::block_on`), its connections driven by a runtime of its
//! own, so it never stalls a worker of the gateway's runtime, and a test may call the store
//! from any thread on either backend.
//!
//! Events a write stores for devices are published to the hub (see `hub`) after the commit that
//! made them durable, in commit order: on SQLite by the committer, on PostgreSQL by each
//! replica's publisher, which reads them back from the events table (see `postgres`).

use std::path::Path;
use std::sync::Arc;

use countersign_protocol::audit::AuditEntry;
use countersign_protocol::Digest;

use crate::error::StoreError;
use crate::hub::{Hub, Pushed};

pub mod acks;
pub mod admission;
pub mod audit;
pub mod challenges;
pub mod checkpoints;
pub mod decisions;
pub mod deliveries;
pub mod devices;
pub mod directory;
pub mod events;
pub mod github;
pub mod memberships;
pub mod pairing;
pub mod passkeys;
mod postgres;
pub mod reports;
pub mod requests;
pub mod sql;
mod sqlite;
pub mod tokens;
pub mod witnesses;

pub use acks::AckRows;
pub use admission::AdmissionRows;
pub use audit::AuditRows;
pub use challenges::ChallengeRows;
pub use checkpoints::CheckpointRows;
pub use decisions::DecisionRows;
pub use deliveries::DeliveryRows;
pub use devices::DeviceRows;
pub use directory::{DirectoryRows, PersonListing};
pub use events::EventRows;
pub use github::GithubRows;
pub use memberships::MembershipRows;
pub use pairing::PairingRows;
pub use passkeys::PasskeyRows;
pub use reports::ReportRows;
pub use requests::RequestRows;
pub use sqlite::StoreStats;
pub use tokens::{TokenRow, TokenRows};
pub use witnesses::WitnessRows;

/// A write's or read's transaction: every owner's rows. A read's transaction only reads (its
/// connection refuses changes) and sees the last commit.
///
/// Every backend must make write transactions appear serialised: each sees every write
/// committed before it and none runs interleaved with another. The domain relies on it where
/// it reads and then writes:
///
/// - [`AuditRows::audit_append`] reads the last entry and inserts the next one, numbered and
///   linked after it, so two writes appending at once would fork the chain;
/// - a stored event's `seq` ([`EventRows::enqueue`]) must rise in commit order, because a
///   stream reads its backlog as the events with `seq` greater than the last one it sent
///   and would skip for good an event committed after one with a greater `seq`;
/// - a decision asks [`DecisionRows::has_decided`] before it inserts the vote, and counts the
///   votes for the quorum after it, so of two decisions on one request the later must see
///   the earlier's vote.
///
/// SQLite gives this with its single writer connection (one write transaction at a time). A
/// backend whose writers run concurrently must provide it itself, for example with one lock
/// taken at the start of every write transaction and held until its commit (in PostgreSQL a
/// transaction-level advisory lock, `pg_advisory_xact_lock`), so that numbering order and
/// commit order are the same.
///
/// The traits take `&self`, and a transaction is used from one thread only (its closure's, on
/// the blocking pool). Both backends run every statement through [`sql::Db`], which needs only
/// `&self`.
pub trait Tx:
    RequestRows
    + DecisionRows
    + ChallengeRows
    + DeviceRows
    + PasskeyRows
    + PairingRows
    + TokenRows
    + DirectoryRows
    + ReportRows
    + CheckpointRows
    + EventRows
    + AuditRows
    + AckRows
    + MembershipRows
    + WitnessRows
    + AdmissionRows
    + DeliveryRows
    + GithubRows
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
        + DirectoryRows
        + ReportRows
        + CheckpointRows
        + EventRows
        + AuditRows
        + AckRows
        + MembershipRows
        + WitnessRows
        + AdmissionRows
        + DeliveryRows
        + GithubRows
        + ?Sized
{
}

/// The gateway's database, behind the storage seam (today the SQLite file `gateway.db`; how
/// that engine batches writes into shared commits is described in `sqlite`).
///
/// A write commits if its closure returns `Ok` and leaves no trace if it returns an error; it
/// is answered only after the commit that holds it returned. A read sees the last commit. The
/// closures are synchronous and run on tokio's blocking pool (see the module documentation).
pub struct Store {
    engine: Engine,
}

/// How many single-use keys a SQLite store keeps before it forgets those past their horizon.
const ONCE_PRUNE_AT: usize = 4096;

/// The database a [`Store`] opened.
enum Engine {
    /// With the single-use keys in memory: one process serves the database.
    Sqlite(
        sqlite::Sqlite,
        std::sync::Mutex<std::collections::HashMap<String, i64>>,
    ),
    Postgres(postgres::Postgres),
}

impl Store {
    /// Opens (creating it owner-only if needed) and migrates the database at `path`; committed
    /// events are published to `hub`. Fills in the transparency log's tree for audit entries
    /// that have none yet (those written before schema version 12).
    pub fn open(path: &Path, hub: Arc<Hub>) -> Result<Store, StoreError> {
        Store::opened(Engine::Sqlite(
            sqlite::Sqlite::open(path, hub)?,
            std::sync::Mutex::default(),
        ))
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user@host/db`), shared with
    /// the other replicas, and migrates it; every replica's committed events are published to
    /// `hub` (see `postgres`).
    pub fn open_postgres(url: &str, hub: Arc<Hub>) -> Result<Store, StoreError> {
        Store::opened(Engine::Postgres(postgres::Postgres::open(url, hub)?))
    }

    fn opened(engine: Engine) -> Result<Store, StoreError> {
        let store = Store { engine };
        if store.read(|tx| tx.log_behind())? {
            let added = store.write(|tx| tx.log_backfill())?;
            tracing::info!(
                entries = added,
                "audit entries added to the transparency log's tree"
            );
        }
        Ok(store)
    }

    /// Runs `f` in a write transaction that commits if `f` returns `Ok` and is rolled back if it
    /// returns an error; an `Ok` is returned only once the commit that holds it returned.
    pub fn write<T, E>(&self, f: impl FnOnce(&dyn Tx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.write_publish(|tx| f(tx).map(|t| (t, Vec::new())))
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
        match &self.engine {
            Engine::Sqlite(e, _) => e.write_publish(|tx| f(tx)),
            Engine::Postgres(e) => e.write_publish(|tx| f(tx)),
        }
    }

    /// Runs a read-only `f` in a transaction that sees the last commit.
    pub fn read<T, E>(&self, f: impl FnOnce(&dyn Tx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        match &self.engine {
            Engine::Sqlite(e, _) => e.read(|tx| f(tx)),
            Engine::Postgres(e) => e.read(|tx| f(tx)),
        }
    }

    /// The schema version the database had if opening it upgraded it from protocol version 1:
    /// the version 1 pairings have ended, which the gateway audits (`protocol.upgraded`).
    pub fn upgraded_from_protocol_1(&self) -> Option<i64> {
        match &self.engine {
            Engine::Sqlite(e, _) => e.upgraded_from_protocol_1(),
            // PostgreSQL came after protocol version 1.
            Engine::Postgres(_) => None,
        }
    }

    /// The schema version the database has now, read from it (so an error means it does not
    /// answer); for readiness (`/readyz`).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        match &self.engine {
            Engine::Sqlite(e, _) => e.schema_version(),
            Engine::Postgres(e) => e.schema_version(),
        }
    }

    /// The schema version this build writes.
    pub fn schema_wanted(&self) -> i64 {
        match &self.engine {
            Engine::Sqlite(e, _) => e.schema_wanted(),
            Engine::Postgres(e) => e.schema_wanted(),
        }
    }

    /// Records `key` (a device authorization's device and nonce) as used at `at`, and says
    /// whether it was new: false means it was used before, on this replica or another. Keys
    /// older than `horizon` may be forgotten (their timestamps are refused by then). Outside
    /// the serialised writes: on PostgreSQL one insert of its own, on SQLite (one process) a
    /// map in memory.
    pub fn claim_once(&self, key: &str, at: i64, horizon: i64) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Sqlite(_, seen) => {
                let mut seen = seen.lock().map_err(|_| StoreError::Poisoned)?;
                if seen.len() > ONCE_PRUNE_AT {
                    seen.retain(|_, ts| *ts >= horizon);
                }
                Ok(seen.insert(key.to_owned(), at).is_none())
            }
            Engine::Postgres(e) => e.claim_once(key, at, horizon),
        }
    }

    /// Whether this gateway runs the work that must run once (the expiry sweep, the webhook and
    /// mail queues, the log's checkpoints): always on SQLite (one process), on PostgreSQL the
    /// one replica that holds the leader's lock (see `postgres`).
    pub fn is_leader(&self) -> bool {
        match &self.engine {
            Engine::Sqlite(..) => true,
            Engine::Postgres(e) => e.is_leader(),
        }
    }

    /// At shutdown: stops leading at once, so another replica takes the work that must run
    /// once without waiting for this process to end (nothing to do on SQLite).
    pub fn step_down(&self) {
        if let Engine::Postgres(e) = &self.engine {
            e.step_down();
        }
    }

    /// Which database this store is: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match &self.engine {
            Engine::Sqlite(..) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// Counts of the writer's work since the store opened (for benchmarks and diagnostics).
    pub fn stats(&self) -> StoreStats {
        match &self.engine {
            Engine::Sqlite(e, _) => e.stats(),
            Engine::Postgres(e) => e.stats(),
        }
    }
}

/// Reads the whole audit chain in order, for verification and for tests (a function, so that
/// `store.read(audit_entries)` reads it).
pub fn audit_entries(tx: &dyn Tx) -> Result<Vec<(AuditEntry, Digest)>, StoreError> {
    tx.audit_entries()
}
