//! The `dashboard_sessions` table's sea-orm entity: one row per refresh token.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dashboard_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::SessionId,
    pub user_id: crate::ids::UserId,
    /// SHA-256 of the refresh token: the token itself is only ever in the user's cookie.
    pub refresh_hash: String,
    pub expires_at: DateTimeUtc,
    /// Set when the user signs out or the token is replaced by a refresh.
    pub revoked_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    /// The session its sign-in started; every refresh's replacement keeps it.
    pub family_id: crate::ids::SessionId,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
