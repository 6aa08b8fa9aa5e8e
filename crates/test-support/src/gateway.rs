//! A gateway in this process on a free loopback port, with its data in a temporary directory and
//! a token for the requester; devices paired with it; and the same gateway opened again over its
//! data on its address (a restart).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use countersign_gateway::client::RequesterClient;
use countersign_gateway::{Config, Gateway, Running};
use countersign_protocol::api::NewRequest;
use countersign_protocol::audit::AuditEntry;
use countersign_protocol::{Digest, PairingLink, PublicKey};
use url::Url;

use crate::device::{Device, PairedGateway};
use crate::http::Refusal;

/// The requester every test gateway issues its token to.
pub const REQUESTER: &str = "ci-bot";

/// The settings a test gateway starts from: loopback on a free port, data in `data_dir`, a
/// keep-alive every second (so a dead stream is found quickly), a fast expiry sweep, and a rate
/// limit no test reaches unless it sets its own.
pub fn test_config(data_dir: PathBuf) -> Config {
    Config {
        database_url: test_database(&data_dir),
        data_dir,
        listen: "127.0.0.1:0".parse().unwrap(),
        keepalive_seconds: 1,
        expiry_sweep_ms: 100,
        rate_limit_per_minute: 10_000,
        ..Config::default()
    }
}

/// A deploy to `approvers` (one approval, five minutes), its detail naming `summary`.
pub fn sample_request(approvers: &[&str], summary: &str) -> NewRequest {
    NewRequest {
        action: "deploy".into(),
        resource: "prod/api".into(),
        risk: None,
        summary: summary.into(),
        detail: format!("kubectl rollout restart deploy/api # {summary}"),
        reason: "release".into(),
        ttl_seconds: 300,
        approvers: approvers.iter().map(|s| s.to_string()).collect(),
        min_approvals: 1,
        require_match: false,
        break_glass: false,
    }
}

/// The database of a test gateway over `data_dir`: the SQLite file in it, or, when the tests
/// run with `COUNTERSIGN_TEST_STORE=postgres`, a database of its own on the test binary's
/// PostgreSQL server (`postgres::shared`), the same one each time the directory is opened, so
/// that a restart finds its data.
pub fn test_database(data_dir: &Path) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static DATABASES: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);
    match std::env::var("COUNTERSIGN_TEST_STORE").as_deref() {
        Ok("postgres") => {}
        Ok("sqlite") | Err(_) => return None,
        Ok(other) => panic!("COUNTERSIGN_TEST_STORE={other}: it is sqlite or postgres"),
    }
    let mut dbs = DATABASES.lock().unwrap_or_else(|p| p.into_inner());
    let url = dbs
        .get_or_insert_with(HashMap::new)
        .entry(data_dir.to_path_buf())
        .or_insert_with(|| crate::postgres::shared().database().unwrap());
    Some(url.clone())
}

/// Opens the gateway `config` describes, gives [`REQUESTER`] a token, and serves it: what every
/// test gateway does, whoever owns its data directory (a benchmark's child process owns none).
pub async fn start_serving(config: Config) -> anyhow::Result<(Running, String)> {
    let gw = Gateway::open(config)?;
    let token = countersign_gateway::tokens::create(&gw, REQUESTER)?;
    let running = countersign_gateway::serve(gw).await?;
    Ok((running, token))
}

/// A gateway running in this process on a free loopback port.
pub struct TestGateway {
    pub running: Running,
    pub url: Url,
    /// The bearer token of [`REQUESTER`].
    pub token: String,
    /// Holds the gateway's data directory (`<dir>/gateway`); dropping it deletes the directory.
    pub dir: tempfile::TempDir,
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        Self::start_with(|_| {}).await
    }

    /// A gateway with the [`test_config`] settings as `f` changes them.
    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path().join("gateway"));
        f(&mut config);
        Self::serve(config, dir).await.unwrap()
    }

    /// Serves `config` as it is (a benchmark's own settings); `dir` holds its data directory
    /// and goes with it.
    pub async fn serve(config: Config, dir: tempfile::TempDir) -> anyhow::Result<TestGateway> {
        let (running, token) = start_serving(config).await?;
        let url = running.url();
        Ok(TestGateway {
            running,
            url,
            token,
            dir,
        })
    }

    pub fn gw(&self) -> &Arc<Gateway> {
        &self.running.gateway
    }

    /// A pairing link for `approver`, pointing at this gateway.
    pub fn invite(&self, approver: &str) -> PairingLink {
        countersign_gateway::pairing::invite(self.gw(), approver, self.url.clone()).unwrap()
    }

    /// Pairs a new device for `approver` over HTTP.
    pub async fn pair(&self, approver: &str) -> Device {
        let link = self.invite(approver);
        self.pair_with_link(&link).await.unwrap()
    }

    /// Pairs a new device with `link`, keeping the gateway's refusal.
    pub async fn pair_with_link(&self, link: &PairingLink) -> Result<Device, Refusal> {
        Device::pair(&reqwest::Client::new(), link, "test device").await
    }

    /// Another replica of this gateway: the same PostgreSQL database and key (its data
    /// directory), configured as `tweak` says, serving on a port of its own.
    pub async fn replica(&self, tweak: impl FnOnce(&mut Config)) -> Replica {
        let mut config = test_config(self.gw().config.data_dir.clone());
        config.database_url = self.gw().config.database_url.clone();
        assert!(
            config.database_url.is_some(),
            "replicas share a PostgreSQL database (database_url)"
        );
        tweak(&mut config);
        let gw = Gateway::open(config).unwrap();
        let running = countersign_gateway::serve(gw).await.unwrap();
        Replica {
            url: running.url(),
            running,
            token: self.token.clone(),
        }
    }

    /// The gateway's own requester client, with [`REQUESTER`]'s token.
    pub fn requester(&self) -> RequesterClient {
        RequesterClient::new(self.url.clone(), self.token.clone()).unwrap()
    }

    /// A request to `approvers` (one approval needed, five minutes to live) summarised as
    /// `summary`; identical requests from one requester collapse, so tests vary the summary.
    pub fn new_request(&self, approvers: &[&str], summary: &str) -> NewRequest {
        sample_request(approvers, summary)
    }

    /// Stops the gateway and opens it again over its data on the same address: a restart.
    /// `tweak` adjusts the new configuration (from the defaults, as [`reopen_gateway`]),
    /// `before_serve` runs after the old one stopped and before the new one serves.
    pub async fn restart(
        self,
        tweak: impl FnOnce(&mut Config),
        before_serve: impl FnOnce(&Gateway),
    ) -> TestGateway {
        let TestGateway {
            running,
            url,
            token,
            dir,
        } = self;
        let addr = running.addr;
        running.shutdown().await;
        let running = reopen_gateway(&dir.path().join("gateway"), addr, tweak, before_serve).await;
        TestGateway {
            running,
            url,
            token,
            dir,
        }
    }

    /// How many entries of `kind` the gateway's audit log holds.
    pub fn audited(&self, kind: &str) -> usize {
        self.audit().iter().filter(|(e, _)| e.kind == kind).count()
    }

    /// The gateway's audit log, each entry with its hash.
    pub fn audit(&self) -> Vec<(AuditEntry, Digest)> {
        self.gw()
            .store
            .read(countersign_gateway::store::audit_entries)
            .unwrap()
    }
}

/// A gateway in this process, reached at its `url`, is one a device pairs with.
macro_rules! paired_gateway {
    ($t:ty) => {
        impl PairedGateway for $t {
            fn url(&self) -> &Url {
                &self.url
            }

            fn gateway_key(&self) -> PublicKey {
                self.gw().key.public()
            }

            fn fingerprint(&self) -> String {
                self.gw().fingerprint.clone()
            }

            fn now(&self) -> i64 {
                self.gw().now()
            }
        }
    };
}

paired_gateway!(TestGateway);

/// A second (third, ...) gateway process over the same PostgreSQL database as a
/// [`TestGateway`] ([`TestGateway::replica`]), in this process.
pub struct Replica {
    pub running: Running,
    pub url: Url,
    /// The bearer token of [`REQUESTER`] (the database's, so every replica's).
    pub token: String,
}

impl Replica {
    pub fn gw(&self) -> &Arc<Gateway> {
        &self.running.gateway
    }

    /// A requester client of this replica, with [`REQUESTER`]'s token.
    pub fn requester(&self) -> RequesterClient {
        RequesterClient::new(self.url.clone(), self.token.clone()).unwrap()
    }
}

paired_gateway!(Replica);

/// A gateway opened again over `data_dir` on `addr` (a restart), with the test keep-alive;
/// `tweak` adjusts the config, `before_serve` the gateway (e.g. to move its clock) before it
/// serves.
pub async fn reopen_gateway(
    data_dir: &Path,
    addr: SocketAddr,
    tweak: impl FnOnce(&mut Config),
    before_serve: impl FnOnce(&Gateway),
) -> Running {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        database_url: test_database(data_dir),
        listen: addr,
        keepalive_seconds: 1,
        ..Config::default()
    };
    tweak(&mut config);
    let gw = Gateway::open(config).unwrap();
    before_serve(&gw);
    countersign_gateway::serve(gw).await.unwrap()
}
