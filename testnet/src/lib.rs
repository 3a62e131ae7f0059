//! In-process regtest chain serving the Esplora API.
