//! An incremental parser for `text/event-stream` (the WHATWG Server-Sent Events format).
//!
//! Bytes are fed as they arrive; complete events come out. Comment lines (keep-alives) are
//! reported too, so a client can tell a quiet stream from a dead one.

/// One thing read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    Event {
        id: Option<String>,
        event: String,
        data: String,
    },
    /// A comment line, sent by the server as a keep-alive.
    Comment,
}

/// Limits how much an unterminated event may buffer, so a hostile server cannot exhaust memory.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event is larger than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    #[error("the stream is not valid UTF-8")]
    Utf8,
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    pending_bytes: usize,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes and returns every item completed by them.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseItem>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            // A CR may be followed by LF; wait for the next byte if the CR ends the buffer.
            let mut consumed = pos + 1;
            if self.buf[pos] == b'\r' {
                match self.buf.get(pos + 1) {
                    Some(b'\n') => consumed += 1,
                    Some(_) => {}
                    None => break,
                }
            }
            let line: Vec<u8> = self.buf.drain(..consumed).take(pos).collect();
            let line = String::from_utf8(line).map_err(|_| SseError::Utf8)?;
            if let Some(item) = self.line(&line)? {
                out.push(item);
            }
        }
        if self.buf.len() + self.pending_bytes > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge);
        }
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Result<Option<SseItem>, SseError> {
        if line.is_empty() {
            self.pending_bytes = 0;
            let event = self.event.take();
            return Ok(self.data.take().map(|data| SseItem::Event {
                id: self.id.clone(),
                event: event.unwrap_or_else(|| "message".to_string()),
                data,
            }));
        }
        if line.starts_with(':') {
            return Ok(Some(SseItem::Comment));
        }
        self.pending_bytes += line.len();
        if self.pending_bytes > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            // An id containing NUL is ignored, as the standard says.
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_anywhere() {
        let text = b": keep-alive\n\nid: 7\nevent: request\ndata: {\"a\":\ndata: 1}\n\r\nid: 8\r\ndata: x\r\n\r\n";
        for split in 0..text.len() {
            let mut p = SseParser::new();
            let mut items = p.feed(&text[..split]).unwrap();
            items.extend(p.feed(&text[split..]).unwrap());
            assert_eq!(
                items,
                vec![
                    SseItem::Comment,
                    SseItem::Event {
                        id: Some("7".into()),
                        event: "request".into(),
                        data: "{\"a\":\n1}".into()
                    },
                    SseItem::Event {
                        id: Some("8".into()),
                        event: "message".into(),
                        data: "x".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut p = SseParser::new();
        let big = vec![b'a'; MAX_EVENT_BYTES + 10];
        assert_eq!(p.feed(&big), Err(SseError::TooLarge));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut p = SseParser::new();
        assert_eq!(p.feed(b"data: \xff\n"), Err(SseError::Utf8));
    }
}
