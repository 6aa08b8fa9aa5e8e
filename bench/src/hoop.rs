//! The hoop connector's figures (docs/performance.md): from a review's creation in hoop to its
//! notification by a running engine, against one poll interval + 50 ms at p99; and what the
//! polling costs hoop, in requests a minute, counted by the fake hoop while nothing waits.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use countersign_approver::{Engine, EngineOptions, Notifier, SoftAuthenticator};
use countersign_test_support::hoop::{FakeHoop, HoopUser, NewReview};
use rand::Rng as _;
use zeroize::Zeroizing;

use crate::common::{ms, Figure, Stats};

/// When each notice arrived.
#[derive(Default)]
struct Arrivals(Mutex<Vec<(String, Instant)>>);

impl Notifier for Arrivals {
    fn hoop_review_arrived(&self, _connection: &str, review_id: &str) {
        if let Ok(mut a) = self.0.lock() {
            a.push((review_id.to_owned(), Instant::now()));
        }
    }
}

pub async fn run(reviews: usize, interval: Duration, idle: Duration) -> Result<Vec<Figure>> {
    let hoop = FakeHoop::start().await;
    let alice = HoopUser::new("auth0|alice", "alice@example.com", &["sre"]);
    let bob = HoopUser::new("auth0|bob", "bob@example.com", &["dev"]);
    hoop.add_user("hpk_alice", &alice);
    let dir = tempfile::tempdir()?;
    let engine = Engine::open_with(
        dir.path(),
        EngineOptions {
            hoop_poll: interval,
            ..Default::default()
        },
    )?;
    let arrivals = Arc::new(Arrivals::default());
    engine.set_notifier(arrivals.clone());
    let mut soft = SoftAuthenticator::open(&dir.path().join("soft-authenticator.cbor"))?;
    engine
        .connect_hoop(hoop.url(), Zeroizing::new("hpk_alice".into()), &mut soft)
        .await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run(stopped).await }
    });

    // What polling costs hoop while nothing waits.
    tokio::time::sleep(interval).await;
    let before = hoop.state.calls.load(Ordering::SeqCst);
    tokio::time::sleep(idle).await;
    let calls = hoop.state.calls.load(Ordering::SeqCst) - before;
    let per_minute = calls as f64 * 60.0 / idle.as_secs_f64();

    // Reviews created at random moments of the poll cycle, one at a time.
    let mut latencies = Vec::with_capacity(reviews);
    for i in 0..reviews {
        let pause = rand::thread_rng().gen_range(0..interval.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let created = Instant::now();
        let (_, id) = hoop.create(NewReview::exec(&bob, &format!("SELECT {i};")));
        let deadline = created + interval * 3 + Duration::from_secs(5);
        let arrived = loop {
            let found = arrivals
                .0
                .lock()
                .map_err(|_| anyhow!("the notices' lock"))?
                .iter()
                .find(|(n, _)| *n == id)
                .map(|(_, t)| *t);
            if let Some(t) = found {
                break t;
            }
            if Instant::now() > deadline {
                return Err(anyhow!("review {i} was not notified within {deadline:?}"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push(arrived.saturating_duration_since(created));
    }
    let _ = stop.send(true);
    running.await??;
    let stats = Stats::of(&latencies)?;
    println!(
        "hoop review to notification (poll every {}): {}",
        ms(interval),
        stats.line()
    );
    println!(
        "hoop requests while idle: {calls} in {:.0} s = {per_minute:.1}/min",
        idle.as_secs_f64()
    );
    let target = interval + Duration::from_millis(50);
    let expected = 60.0 / interval.as_secs_f64();
    Ok(vec![
        Figure {
            name: "hoop-notify",
            value: format!("p99 {} (p50 {})", ms(stats.p99), ms(stats.p50)),
            target: format!("p99 <= {} (poll + 50 ms)", ms(target)),
            pass: Some(stats.p99 <= target),
        },
        Figure {
            name: "hoop-cost",
            value: format!("{per_minute:.1} requests/min per approver"),
            target: format!("one per poll: {expected:.0}/min"),
            pass: Some(per_minute <= expected * 1.1),
        },
    ])
}
