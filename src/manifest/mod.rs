//! Stage manifests: discovery, parsing with locations, validation, the Desired snapshot.
