//! Forwards the Lightning node's log records to `tracing` (target `ldk`), tagged with the node's
//! label, so that one subscriber and one `RUST_LOG` filter cover everything.

use ldk_node::logger::{LogLevel, LogRecord, LogWriter};

/// A `LogWriter` that emits `tracing` events.
#[derive(Debug)]
pub(crate) struct TracingLogWriter {
    pub node: String,
}

impl LogWriter for TracingLogWriter {
    fn log<'a>(&self, record: LogRecord<'a>) {
        let node = self.node.as_str();
        let module = record.module_path;
        match record.level {
            LogLevel::Gossip | LogLevel::Trace => {
                tracing::trace!(target: "ldk", node, module, "{}", record.args)
            }
            LogLevel::Debug => tracing::debug!(target: "ldk", node, module, "{}", record.args),
            LogLevel::Info => tracing::info!(target: "ldk", node, module, "{}", record.args),
            LogLevel::Warn => tracing::warn!(target: "ldk", node, module, "{}", record.args),
            LogLevel::Error => tracing::error!(target: "ldk", node, module, "{}", record.args),
        }
    }
}
