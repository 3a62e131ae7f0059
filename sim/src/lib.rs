//! Byzantine simulator library.
