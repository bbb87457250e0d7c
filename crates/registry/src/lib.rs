//! See the crate description; filled by the issue that owns it.
