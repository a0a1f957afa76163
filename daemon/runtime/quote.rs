//! Caller input quoted in messages, bounded, so a hostile input cannot make a reply too
//! big to send.

/// Caller input as it appears in messages: enough to recognise it, never so much that the
/// reply (whose message travels in an HTTP/2 header) breaks.
pub fn shorten(text: &str) -> String {
    const SHOWN: usize = 64;
    if text.len() <= SHOWN {
        return format!("{text:?}");
    }
    let mut end = SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &text[..end], text.len())
}
