//! Why something of the gateway log does not verify.

/// Why a log checkpoint, a proof or a cosignature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("the checkpoint is not a signed note: {0}")]
    MalformedNote(String),
    #[error("the checkpoint body is not a tlog-checkpoint")]
    MalformedCheckpoint,
    #[error("the checkpoint's origin is {found:?}, not {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("the checkpoint carries no valid signature of the gateway key ({0})")]
    BadSignature(String),
    #[error("the proof does not verify: {0}")]
    BadProof(String),
    #[error("the cosignature does not verify: {0}")]
    BadCosignature(String),
    #[error("the log has no leaf {index} (its size is {size})")]
    OutOfRange { index: u64, size: u64 },
    #[error("the stored tree hashes cannot be read: {0}")]
    Storage(String),
}
