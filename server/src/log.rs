//! One-line logfmt records on stdout, for `kubectl logs` and the runbooks' greps.
//!
//! Only `error` and `fatal` records may contain those words: verify counts lines matching
//! `error|exception|fatal`, so routine records must not trip it.
use std::time::{SystemTime, UNIX_EPOCH};

pub fn record(level: &str, message: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let mut line = format!("ts_ms={millis} level={level} msg={message:?}");
    for (key, value) in fields {
        line.push_str(&format!(" {key}={:?}", value.to_string()));
    }
    println!("{line}");
}

pub fn info(message: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    record("info", message, fields)
}

pub fn warn(message: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    record("warn", message, fields)
}

pub fn error(message: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    record("error", message, fields)
}
