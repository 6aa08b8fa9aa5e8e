//! Countersign's background approver, `countersign-agent`: the engine, the gateways' streams,
//! desktop notifications and the tray, in a process that links neither WebKit nor GTK, so an
//! approver that runs all day costs what a tray icon costs. The window (`countersign-desktop`)
//! is a separate process, started on demand, that talks to this one over a local socket
//! (`countersign_ipc::agent`); [`client`] is its end.
//!
//! Code map:
//! - `service`: the agent's life (open the engine, start everything, end on Quit or a signal);
//! - `server`, `lines`: the socket (same-user windows only, bounded JSON lines);
//! - `commands`: one function per window call, over the engine; `passkeys` those of the
//!   security key and the approver's passkeys; `hoop` those of hoop.dev gateways (their
//!   reviews in the same inbox, and connecting one);
//! - `key_prompt`: the security key's questions (PIN, touch, next key), asked in the window;
//! - `clients`: the connected windows and what is pushed to them;
//! - `window`: showing the window, starting it when none is open;
//! - `notify`, `tray`: desktop notifications and the StatusNotifierItem tray;
//! - `state`, `settings`, `autostart`, `pairing`, `paths`, `context`: what they say.
//!
//! **Architecture Invariant:** nothing that arrives from outside a window (a notification
//! action, the tray, a deep link, a second launch) decides a request. Those can only show the
//! window, navigate to a request, or offer a pairing the person must confirm there.
//!
//! **Architecture Invariant:** the socket serves only the user who runs the agent: it is
//! owner-only in the owner-only data directory, and a peer of another uid is refused.
#![forbid(unsafe_code)]

pub mod autostart;
pub mod client;
mod clients;
mod commands;
mod context;
mod hoop;
mod key_prompt;
mod lines;
mod locks;
mod notify;
mod pairing;
mod passkeys;
pub mod paths;
mod server;
mod service;
pub mod settings;
mod state;
mod tray;
mod window;

pub use service::run;
/// Locking a mutex whose data stays valid after a panicking holder (the window uses it too).
pub use state::lock;
