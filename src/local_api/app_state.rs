//! What every route handler shares: the data store and the public id of the token.

use super::state::Store;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The public id of the configured token (answered by token verify).
    pub token_id: String,
}
