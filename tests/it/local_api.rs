//! local_api tests
