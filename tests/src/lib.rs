//! Test-only crate: the suites are under tests/.
