//! The tray icon, as a D-Bus StatusNotifierItem (the `ksni` crate: no GTK, no WebKit): the
//! pending count in its title and tooltip, a click that opens the window, and a menu with
//! Open, Pause notifications for 1 hour, and Quit. None of it decides a request.

use std::sync::{Arc, Weak};
use std::time::Duration;

use ksni::menu::StandardItem;
use ksni::{Icon, MenuItem, ToolTip, TrayMethods};

use crate::context::Agent;
use crate::state::lock;

/// The product icon, 32×32 ARGB32 in network byte order (made from `icons/32x32.png`).
const ICON_ARGB: &[u8] = include_bytes!("../assets/tray-32x32.argb");
const ICON_SIZE: i32 = 32;

/// Counting takes the engine's database lock for a scan of the inbox table (a count, no rows
/// decoded), so a burst of events (a backlog of thousands) must not count once per event.
const MIN_INTERVAL: Duration = Duration::from_secs(2);

/// What the tray shows, and the agent its menu acts on.
struct CountersignTray {
    agent: Weak<Agent>,
    pending: usize,
    paused: bool,
}

impl CountersignTray {
    fn with_agent(&self, f: impl FnOnce(&Agent)) {
        if let Some(a) = self.agent.upgrade() {
            f(&a);
        }
    }
}

/// The tooltip's sentence.
fn summary(pending: usize, paused: bool) -> String {
    let mut s = match pending {
        0 => "Countersign: no pending requests".to_owned(),
        1 => "Countersign: 1 pending request".to_owned(),
        n => format!("Countersign: {n} pending requests"),
    };
    if paused {
        s.push_str(" (notifications paused)");
    }
    s
}

fn icon() -> Vec<Icon> {
    vec![Icon {
        width: ICON_SIZE,
        height: ICON_SIZE,
        data: ICON_ARGB.to_vec(),
    }]
}

impl ksni::Tray for CountersignTray {
    fn id(&self) -> String {
        "countersign".into()
    }

    fn title(&self) -> String {
        match self.pending {
            0 => "Countersign".into(),
            n => format!("Countersign ({n})"),
        }
    }

    fn category(&self) -> ksni::Category {
        ksni::Category::Communications
    }

    fn status(&self) -> ksni::Status {
        if self.pending > 0 {
            ksni::Status::NeedsAttention
        } else {
            ksni::Status::Active
        }
    }

    fn icon_name(&self) -> String {
        crate::paths::DESKTOP_PROGRAM.into()
    }

    fn icon_pixmap(&self) -> Vec<Icon> {
        icon()
    }

    fn attention_icon_pixmap(&self) -> Vec<Icon> {
        icon()
    }

    fn tool_tip(&self) -> ToolTip {
        ToolTip {
            title: summary(self.pending, self.paused),
            icon_pixmap: icon(),
            ..Default::default()
        }
    }

    fn activate(&mut self, _x: i32, _y: i32) {
        self.with_agent(|a| a.show(None));
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        vec![
            StandardItem {
                label: "Open Countersign".into(),
                activate: Box::new(|t: &mut Self| t.with_agent(|a| a.show(None))),
                ..Default::default()
            }
            .into(),
            StandardItem {
                label: "Pause notifications for 1 hour".into(),
                activate: Box::new(|t: &mut Self| t.with_agent(|a| pause_notifications(a, 3600))),
                ..Default::default()
            }
            .into(),
            MenuItem::Separator,
            StandardItem {
                label: "Quit".into(),
                activate: Box::new(|t: &mut Self| t.with_agent(Agent::quit)),
                ..Default::default()
            }
            .into(),
        ]
    }

    fn watcher_offline(&self, reason: ksni::OfflineReason) -> bool {
        // Keep the item: a panel that starts later (or restarts) finds it again.
        tracing::debug!(?reason, "no tray host");
        true
    }
}

/// Puts the icon up and keeps its count current until the agent ends. Without a session bus
/// there is no tray (logged); notifications and the window still work.
pub async fn run(agent: Arc<Agent>) {
    let tray = CountersignTray {
        agent: Arc::downgrade(&agent),
        pending: 0,
        paused: false,
    };
    // Assumed available: without a StatusNotifierWatcher yet (a panel that starts after the
    // agent, or none at all), the item still serves its interface and registers when one
    // appears.
    let handle = match tray.assume_sni_available(true).spawn().await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "no tray icon");
            return;
        }
    };
    agent.tray_changed();
    loop {
        agent.tray_wanted.notified().await;
        let a = agent.clone();
        let counted = tokio::task::spawn_blocking(move || count(&a)).await;
        match counted {
            Ok(Some((pending, paused))) => {
                handle
                    .update(|t: &mut CountersignTray| {
                        t.pending = pending;
                        t.paused = paused;
                    })
                    .await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "tray refresh failed"),
        }
        tokio::time::sleep(MIN_INTERVAL).await;
    }
}

/// The pending count and whether notifications are paused; blocks on the database.
fn count(agent: &Agent) -> Option<(usize, bool)> {
    let state = &agent.state;
    let pending = match state.engine.pending_count() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot count pending requests");
            return None;
        }
    };
    let paused = lock(&state.settings)
        .notifications_paused_until
        .is_some_and(|t| t > state.engine.now());
    Some((pending, paused))
}

/// Pauses new notifications for `seconds` (the menu's "Pause notifications for 1 hour").
fn pause_notifications(agent: &Agent, seconds: i64) {
    let state = &agent.state;
    let mut snapshot = lock(&state.settings).clone();
    snapshot.notifications_paused_until = Some(state.engine.now() + seconds);
    if let Err(e) = state.store_settings(snapshot) {
        tracing::warn!(error = %e.message, "cannot save the notification pause");
    }
    agent.tray_changed();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_icon_is_32_by_32_argb() {
        assert_eq!(ICON_ARGB.len(), 32 * 32 * 4);
    }

    #[test]
    fn the_tooltip_counts_and_says_when_paused() {
        assert_eq!(summary(0, false), "Countersign: no pending requests");
        assert_eq!(summary(1, false), "Countersign: 1 pending request");
        assert_eq!(
            summary(3, true),
            "Countersign: 3 pending requests (notifications paused)"
        );
    }
}
