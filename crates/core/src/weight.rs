//! What a webhook body may weigh: the default bound, the buffer that keeps
//! a body within it, and the longest text each placeholder may become (what
//! a scenario's custom fields are measured with at save time).

/// The most a webhook body may weigh by default (`CALLHOOK_MAX_PAYLOAD_BYTES`).
///
/// The page's example body is about 1 KiB. A call with every visit field at
/// its longest (2,048 characters, ASCII) is about 40 KiB, so 64 KiB leaves
/// room for that and a scenario's custom fields. It also bounds what one call
/// can make callhook store and send: a batch of 1,000 calls is at most
/// 64 MiB of bodies, not the gigabytes that placeholders repeated in custom
/// fields used to reach.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// A buffer that refuses to grow past `max` bytes.
pub(crate) struct Bounded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) max: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.max {
            return Err(std::io::Error::other("over the payload limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The longest text a payload field may hold, in characters (a call's
/// checks bound each): what a `{placeholder}` naming it may become.
pub fn longest_text(name: &str) -> usize {
    match name {
        "id" => crate::call::MAX_CALL_ID_LEN,
        "caller" | "callee" => crate::PhoneNumber::MAX_DIGITS,
        // `2019-02-19 00:00:00`
        "date" => 19,
        // i64 and its sign
        "order_id" | "duration" => 20,
        "status" => crate::CallStatus::ALL
            .iter()
            .map(|s| s.as_str().len())
            .max()
            .unwrap_or(0),
        _ => crate::call::MAX_FIELD_LEN,
    }
}
