//! The `payouts` table's sea-orm entity: money sent from a merchant's balance to a mobile
//! money wallet or a bank account, through a provider.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payouts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::PayoutId,
    pub merchant_id: crate::ids::MerchantId,
    /// Test (`false`) or live: objects of one mode are invisible to keys of the other.
    pub livemode: bool,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    pub provider: crate::status::Provider,
    /// `{"type": "mobile_money", "phone", "operator"}` or `{"type": "bank_account", ...}`.
    pub destination: Json,
    pub reference: Option<String>,
    pub metadata: Option<Json>,
    pub status: crate::status::PayoutStatus,
    /// The provider's id for it, once it has it.
    pub provider_reference: Option<String>,
    /// When Payrail called the provider with it (committed before the call). Pending with
    /// `sent_at` and no `provider_reference`: the call's outcome is unknown.
    pub sent_at: Option<DateTimeUtc>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
