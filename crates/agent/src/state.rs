//! What the agent keeps while it runs: the engine, the chosen authenticator, the settings, the
//! engine's run loop and the last connection event of each gateway (for a window that opens
//! later).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use countersign_approver::ceremony::{
    CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse,
};
use countersign_approver::{
    open_authenticator, Authenticator, AuthenticatorChoice, AuthenticatorKind, Engine, EngineError,
};
use countersign_ipc::{AuthenticatorView, ErrorCode, IpcError, Settings, UiEvent};
use countersign_notifications::DesktopNotifier;
use tokio::sync::watch;
use url::Url;

use crate::clients::Clients;
use crate::key_prompt::WindowPrompt;
use crate::settings;

pub use crate::locks::lock;

/// The authenticator chosen by `COUNTERSIGN_AUTHENTICATOR` (`usb`, `soft` or `dev-key`); none
/// otherwise, which is a security key (the software authenticator is never picked implicitly).
pub fn authenticator_choice() -> Result<Option<AuthenticatorChoice>, EngineError> {
    match std::env::var("COUNTERSIGN_AUTHENTICATOR") {
        Ok(v) if !v.is_empty() => v.parse().map(Some),
        _ => Ok(None),
    }
}

/// The engine's run loop. It runs from start-up to quit; a gateway paired meanwhile is
/// connected by the loop itself ([`Engine::run`] is woken by the pairing).
#[derive(Default)]
pub struct Runner {
    stop: Mutex<Option<watch::Sender<bool>>>,
}

impl Runner {
    /// Starts the loop, unless it runs already.
    pub fn start(&self, engine: &Engine) {
        let mut slot = lock(&self.stop);
        if slot.is_some() {
            return;
        }
        let (tx, rx) = watch::channel(false);
        let engine = engine.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.run(rx).await {
                tracing::error!(error = %e, "the engine's run loop stopped");
            }
        });
        *slot = Some(tx);
    }

    /// Stops the loop (at quit).
    pub fn stop(&self) {
        if let Some(old) = lock(&self.stop).take() {
            let _ = old.send(true);
        }
    }
}

/// Shared state behind every command.
pub struct AppState {
    pub engine: Engine,
    pub data_dir: PathBuf,
    pub choice: Option<AuthenticatorChoice>,
    /// The windows, where a security key's questions are asked.
    pub prompt: Arc<WindowPrompt>,
    /// Opened on first use; behind a mutex because a ceremony needs `&mut` and the software
    /// token's counter must not be used twice at once.
    authenticator: Arc<Mutex<Option<Box<dyn Authenticator>>>>,
    pub settings: Arc<Mutex<Settings>>,
    pub runner: Runner,
    /// The desktop notifier, when a session bus was there to start it.
    notifier: Mutex<Option<Arc<DesktopNotifier>>>,
    /// The last connection event per gateway, given to a window that opens after it.
    connections: Mutex<std::collections::BTreeMap<String, UiEvent>>,
}

impl AppState {
    pub fn new(
        engine: Engine,
        choice: Option<AuthenticatorChoice>,
        clients: Arc<Clients>,
    ) -> AppState {
        let data_dir = engine.data_dir().to_path_buf();
        let settings = settings::load(&data_dir);
        AppState {
            engine,
            data_dir,
            choice,
            prompt: Arc::new(WindowPrompt::new(clients)),
            authenticator: Arc::new(Mutex::new(None)),
            settings: Arc::new(Mutex::new(settings)),
            runner: Runner::default(),
            notifier: Mutex::new(None),
            connections: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A handle to run a ceremony with from a blocking thread.
    pub fn authenticator_slot(&self) -> AuthenticatorSlot {
        AuthenticatorSlot {
            slot: self.authenticator.clone(),
            choice: self.choice,
            data_dir: self.data_dir.clone(),
            prompt: self.prompt.clone(),
        }
    }

    pub fn authenticator_view(&self) -> AuthenticatorView {
        let slot = self.authenticator_slot();
        let guard = slot.open();
        match guard {
            Ok(mut g) => match g.as_mut() {
                Some(a) => AuthenticatorView {
                    kind: match a.kind() {
                        AuthenticatorKind::Software => "software",
                        AuthenticatorKind::SecurityKey => "security-key",
                    }
                    .into(),
                    label: a.label().to_owned(),
                    development_mode: a.development_mode(),
                },
                None => none_view(EngineError::NoAuthenticator.to_string()),
            },
            Err(e) => none_view(e.to_string()),
        }
    }

    pub fn set_notifier(&self, n: Option<Arc<DesktopNotifier>>) {
        *lock(&self.notifier) = n;
    }

    /// Saves `settings` and applies them to the notifier.
    pub fn store_settings(&self, settings: Settings) -> Result<(), countersign_ipc::IpcError> {
        settings::save(&self.data_dir, &settings)?;
        if let Some(n) = lock(&self.notifier).as_ref() {
            apply_settings(n, &settings);
        }
        *lock(&self.settings) = settings;
        Ok(())
    }

    /// Remembers a connection event (other events are ignored).
    pub fn note_connection(&self, e: &UiEvent) {
        if let UiEvent::Connection { gateway, .. } = e {
            lock(&self.connections).insert(gateway.clone(), e.clone());
        }
    }

    /// Forgets a removed connection's last event.
    pub fn forget_connection(&self, gateway: &str) {
        lock(&self.connections).remove(gateway);
    }

    /// Tells the desktop notifier that `request_id` is over (its source was removed).
    pub fn notification_resolved(
        &self,
        request_id: &str,
        state: countersign_protocol::RequestState,
    ) {
        if let Some(n) = lock(&self.notifier).as_ref() {
            n.request_resolved(request_id, state);
        }
    }

    pub fn connections(&self) -> Vec<UiEvent> {
        lock(&self.connections).values().cloned().collect()
    }
}

fn none_view(label: String) -> AuthenticatorView {
    AuthenticatorView {
        kind: "none".into(),
        label,
        development_mode: false,
    }
}

/// The authenticator, openable from any thread.
#[derive(Clone)]
pub struct AuthenticatorSlot {
    slot: Arc<Mutex<Option<Box<dyn Authenticator>>>>,
    choice: Option<AuthenticatorChoice>,
    data_dir: PathBuf,
    prompt: Arc<WindowPrompt>,
}

type Guard<'a> = MutexGuard<'a, Option<Box<dyn Authenticator>>>;

impl AuthenticatorSlot {
    /// Locks the slot and opens the chosen authenticator (a security key unless another was
    /// chosen) if it is not open yet. A security key asks its PIN and touch in the window.
    fn open(&self) -> Result<Guard<'_>, EngineError> {
        let mut g = lock(&self.slot);
        if g.is_none() {
            let opened = open_authenticator(self.choice, &self.data_dir, self.prompt.clone())?;
            *g = Some(if opened.kind() == AuthenticatorKind::Software {
                Box::new(SimulatedTouch::new(opened, soft_touch_pause()))
            } else {
                opened
            });
        }
        Ok(g)
    }

    /// Runs `f` with the authenticator, holding its lock throughout: one ceremony, whose
    /// questions the window answers. Blocks: call it from a blocking thread.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn Authenticator) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut g = self.open()?;
        self.prompt.begin();
        match g.as_mut() {
            Some(a) => f(a.as_mut()),
            None => Err(EngineError::NoAuthenticator),
        }
    }

    pub fn is_soft(&self) -> bool {
        self.choice == Some(AuthenticatorChoice::Soft)
    }
}

/// How long the development-mode software authenticator pauses before it "touches": a real key
/// waits for a person, and without the pause the "Confirm with your passkey" state would flash
/// by too fast to see. `COUNTERSIGN_SOFT_TOUCH_MS` (milliseconds, at most 10 s) changes it.
pub const DEFAULT_SOFT_TOUCH: Duration = Duration::from_millis(600);

fn soft_touch_pause() -> Duration {
    std::env::var("COUNTERSIGN_SOFT_TOUCH_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.min(10_000)))
        .unwrap_or(DEFAULT_SOFT_TOUCH)
}

/// The software authenticator with a pause standing in for the touch of a key. Only ever wraps
/// the development-mode authenticator; it changes nothing in the ceremony itself.
struct SimulatedTouch {
    inner: Box<dyn Authenticator>,
    pause: Duration,
}

impl SimulatedTouch {
    fn new(inner: Box<dyn Authenticator>, pause: Duration) -> SimulatedTouch {
        SimulatedTouch { inner, pause }
    }
}

impl Authenticator for SimulatedTouch {
    fn kind(&self) -> AuthenticatorKind {
        self.inner.kind()
    }

    fn label(&self) -> &str {
        self.inner.label()
    }

    fn development_mode(&self) -> bool {
        self.inner.development_mode()
    }

    fn check_can_verify(&mut self) -> Result<(), EngineError> {
        self.inner.check_can_verify()
    }

    fn set_pin(&mut self) -> Result<(), EngineError> {
        self.inner.set_pin()
    }

    fn register(
        &mut self,
        origin: &Url,
        creation: CreationChallengeResponse,
    ) -> Result<RegisterPublicKeyCredential, EngineError> {
        std::thread::sleep(self.pause);
        self.inner.register(origin, creation)
    }

    fn authenticate(
        &mut self,
        origin: &Url,
        challenge: RequestChallengeResponse,
    ) -> Result<PublicKeyCredential, EngineError> {
        std::thread::sleep(self.pause);
        self.inner.authenticate(origin, challenge)
    }
}

/// Applies the notification settings (on/off and the pause) to the notifier.
pub fn apply_settings(n: &DesktopNotifier, settings: &Settings) {
    n.set_enabled(settings.notifications_enabled);
    n.set_paused_until(settings.notifications_paused_until);
}

/// Runs engine work that blocks (a passkey ceremony, which waits for a touch) on a blocking
/// thread, and turns its error into the page's.
pub async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, IpcError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            IpcError::new(
                ErrorCode::Internal,
                format!("The passkey ceremony was interrupted: {e}."),
            )
        })?
        .map_err(IpcError::from)
}
