//! Worker sources: an entry file → the modules uploaded for it, and their content hash.
