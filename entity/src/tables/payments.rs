//! The `payments` table's sea-orm entity.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::PaymentId,
    pub merchant_id: crate::ids::MerchantId,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    pub status: crate::payment_status::PaymentStatus,
    pub provider: crate::status::Provider,
    pub provider_reference: Option<String>,
    pub checkout_url: Option<String>,
    /// This gateway's QR code of `checkout_url` (`/v1/payments/{id}/qr`), when there is one.
    pub qr_code_url: Option<String>,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub customer: Option<Json>,
    pub metadata: Json,
    /// Only brand, last4 and expiry of a card: never the number or the CVC.
    pub payment_method: Option<Json>,
    pub amount_refunded: i64,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub livemode: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Stripe's PaymentIntent client secret, for Stripe.js on the merchant's page.
    pub client_secret: Option<String>,
    pub return_url: Option<String>,
    /// When the pending-payment poller last asked the provider.
    pub last_polled_at: Option<DateTimeUtc>,
    /// A provider reported success after this payment was final (failed or cancelled).
    pub requires_reconciliation: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
