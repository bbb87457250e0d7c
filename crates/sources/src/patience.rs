//! How long a download waits on a server that sends nothing, shared by
//! the transfer loop and the error that reports giving up.

/// How many timeouts' worth of waiting without a byte a download allows,
/// retries and pauses included, before it is given up.
pub const PATIENCE_TIMEOUTS: u32 = 8;
