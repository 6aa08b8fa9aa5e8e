//! Reading the socket's JSON lines with a bound on their length, so a peer cannot make either
//! side buffer without end.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use zeroize::Zeroize;

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("the socket failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("a line is longer than {0} bytes")]
    TooLong(usize),
}

/// Reads the next line (without its newline) into `buf`. `Ok(false)` at the end of the stream;
/// a last line without a newline is still returned. The previous line is wiped first: a line
/// may carry a security key's PIN (`key_answer`).
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<bool, LineError> {
    buf.zeroize();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > max {
            return Err(LineError::TooLong(max));
        }
        buf.extend_from_slice(chunk);
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        let mut input: &[u8] = b"one\ntwo\nthree";
        let mut buf = Vec::new();
        assert!(read_line(&mut input, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"one");
        assert!(read_line(&mut input, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"two");
        assert!(read_line(&mut input, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"three");
        assert!(!read_line(&mut input, &mut buf, 10).await.unwrap());

        let mut long: &[u8] = b"0123456789abc\n";
        assert!(matches!(
            read_line(&mut long, &mut buf, 10).await,
            Err(LineError::TooLong(10))
        ));
    }
}
