//! The `dashboard_users` table's sea-orm entity.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dashboard_users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::UserId,
    pub merchant_id: crate::ids::MerchantId,
    /// Lower-cased; unique across merchants (it is how a person signs in).
    pub email: String,
    /// Argon2id, in the PHC string format (salt and parameters included).
    pub password_hash: String,
    pub role: crate::status::UserRole,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
