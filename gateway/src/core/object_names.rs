//! The `object` field every API object carries (Stripe's convention): one value per type,
//! so each is a one-value enum and the spec says exactly which value, from the type.

/// Declares the one-value enum of an `object` field.
macro_rules! object_name {
    ($($name:ident = $text:literal),* $(,)?) => {
        $(
            #[doc = concat!("Always `", $text, "`.")]
            #[derive(
                poem_openapi::Enum, Debug, Clone, Copy, Default, PartialEq, Eq,
                serde::Serialize, serde::Deserialize,
            )]
            pub enum $name {
                #[default]
                #[oai(rename = $text)]
                #[serde(rename = $text)]
                Is,
            }
        )*
    };
}

object_name!(
    ApiKeyName = "api_key",
    BalanceName = "balance",
    BalanceTransactionName = "balance_transaction",
    EventName = "event",
    ListName = "list",
    LogName = "log",
    MerchantName = "merchant",
    PaymentName = "payment",
    PayoutName = "payout",
    ReconciliationItemName = "reconciliation_item",
    RefundName = "refund",
    UsageName = "usage",
    WebhookDeliveryName = "webhook_delivery",
    WebhookEndpointName = "webhook_endpoint",
    WebhookEndpointRecoveryName = "webhook_endpoint_recovery",
);
