//! The size limits every parser enforces, named after the uWSGI options that set them.
//!
//! Plain data: the config layer fills it in; parsers only read it. No I/O.

/// Size limits for one listener.
///
/// ```ignore
/// let limits = Limits { buffer_size: 4096, ..Limits::default() };
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `buffer-size`: the largest uwsgi vars block, and the largest HTTP request head (request
    /// line + header lines + the empty line). Over it: 431.
    pub(crate) buffer_size: usize,
    /// The longest HTTP request-target. Over it: 414. Default 8 KiB, nginx's own request-line
    /// buffer (`large_client_header_buffers 4 8k`).
    pub(crate) max_uri: usize,
    /// `limit-post`: the largest request body, `None` for no limit (uWSGI's `0`). Over it: 413.
    pub(crate) limit_post: Option<u64>,
}

/// The default `buffer_size`: 65535, the most a uwsgi vars block can hold (its size is a u16),
/// so anything nginx can send fits.
pub(crate) const DEFAULT_BUFFER_SIZE: usize = 65535;

/// The default `max_uri`.
pub(crate) const DEFAULT_MAX_URI: usize = 8192;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            buffer_size: DEFAULT_BUFFER_SIZE,
            max_uri: DEFAULT_MAX_URI,
            limit_post: None,
        }
    }
}

impl Limits {
    /// Whether a body of `len` bytes is over `limit-post`.
    pub(crate) fn is_body_too_large(&self, len: u64) -> bool {
        self.limit_post.is_some_and(|max| len > max)
    }
}
