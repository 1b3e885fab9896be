//! What a service that commits and then acts needs of the process, and nothing more: the
//! database, the bus, the cache and the effects a commit has. Handlers and jobs hand it over;
//! no service sees the HTTP state.

use runtime::bus::EventBus;
use runtime::cache::Cache;
use sea_orm::DatabaseConnection;

use crate::core::effects::Effects;

#[derive(Clone)]
pub struct Deps {
    pub db: DatabaseConnection,
    pub bus: EventBus,
    pub cache: Cache,
    pub effects: Effects,
}
