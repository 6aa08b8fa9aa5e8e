//! What a call to a hoop.dev gateway can end in ([`HoopError`]), each with a sentence and a
//! stable code; the connector (`hoop`) sorts hoop's answers into them.

/// Why a call to hoop failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoopError {
    #[error("hoop at {url} refused the token (HTTP {status}: {message}); connect again with a valid API key or access token.")]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
    },
    #[error("hoop refused: you may not approve your own review.")]
    SelfApproval,
    #[error("hoop refused: you are in none of this review's groups, so you are not eligible to decide it.")]
    NotEligible,
    #[error("hoop refused: the review was already decided (it is {status}).")]
    AlreadyDecided { status: String },
    #[error("hoop has no review {0}.")]
    UnknownReview(String),
    #[error("hoop refused with HTTP {status}: {message}.")]
    Refused { status: u16, message: String },
    #[error("hoop at {url} could not be reached: {detail}.")]
    Unreachable { url: String, detail: String },
    #[error("hoop sent an answer that could not be read: {0}.")]
    BadAnswer(String),
}

impl HoopError {
    /// A stable code for scripts, the audit log and the UI.
    pub fn code(&self) -> &'static str {
        match self {
            HoopError::Unauthorized { .. } => "hoop_unauthorized",
            HoopError::SelfApproval => "hoop_self_approval",
            HoopError::NotEligible => "hoop_not_eligible",
            HoopError::AlreadyDecided { .. } => "hoop_already_decided",
            HoopError::UnknownReview(_) => "hoop_unknown_review",
            HoopError::Refused { .. } => "hoop_refused",
            HoopError::Unreachable { .. } => "hoop_unreachable",
            HoopError::BadAnswer(_) => "hoop_bad_answer",
        }
    }

    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, HoopError::Unreachable { .. })
    }
}
