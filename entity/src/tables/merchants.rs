//! The `merchants` table's sea-orm entity.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "merchants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::MerchantId,
    pub name: String,
    pub created_at: DateTimeUtc,
    /// Requests per second each of this merchant's API keys may make; the server's default
    /// when null.
    pub rate_limit_per_second: Option<i32>,
    /// How many requests a key may make at once after being idle; the server's default when
    /// null.
    pub rate_limit_burst: Option<i32>,
    /// The usage plan whose monthly limits apply.
    pub plan: crate::status::Plan,
    /// A `custom` plan's limits: `{"api_requests": 100000, ...}`; `-1` or absent = unlimited.
    pub usage_limits: Option<Json>,
}

/// The column a trigger bumps with every change to the merchant's webhook endpoints (PostgreSQL
/// only; `migration/src/m20261207_000027_endpoints_version.rs`). Not a field of [`Model`]: only
/// a new payment's statement and the worker's fan-out read it, each by name.
pub const ENDPOINTS_VERSION: &str = "endpoints_version";

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
