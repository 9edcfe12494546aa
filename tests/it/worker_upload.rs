//! worker_upload tests
